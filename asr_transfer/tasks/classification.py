"""Utterance classification (keyword spotting, digits, speaker ID, emotion, intent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from asr_transfer.data.targets import LabelTargets
from asr_transfer.stats import ClipMetric, macro_f1_metric, mean_metric
from asr_transfer.tasks.labelled import LabelledTask

TOP_K = 5  # predictions per clip kept in test_predictions.jsonl (the run report reads them)


class ClassificationTask(LabelledTask):
    """Cross-entropy over ``num_classes``; logs loss, accuracy and macro-F1 per split and the test
    confusion matrix. ``parts``: ``TransferTask``'s arguments (backbone, featurizer, head: a partial
    taking ``input_size`` and ``num_classes``, optimizer, ...)."""

    exact_probe = True  # cross-entropy over class labels: what probe=lbfgs solves exactly

    def __init__(
        self, num_classes: int, labels: list[str] | None = None, label_smoothing: float = 0.0, **parts
    ) -> None:
        super().__init__(head_sizes={"num_classes": num_classes}, **parts)
        self.num_classes = num_classes
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self.label_smoothing = label_smoothing
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion: torch.Tensor | None = None  # set by testing; a test=false run has none
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> LabelTargets:
        return LabelTargets()

    @staticmethod
    def checkpoint_data_kwargs(state: dict) -> dict:
        return {"labels": state["asr_transfer"]["labels"]}  # the trained class order, whatever the data

    def forward(self, batch: dict) -> torch.Tensor:
        rep, frame_lengths = self.encode(batch)
        return self.head(rep, frame_lengths)

    def training_step(self, batch: dict, batch_idx: int):
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return self.guard_loss(loss)

    def _eval_step(self, batch: dict, split: str, metrics: MetricCollection) -> torch.Tensor:
        logits = self(batch).float()
        loss = F.cross_entropy(logits, batch["labels"])
        metrics.update(logits, batch["labels"])
        self.log(f"{split}/loss", loss, batch_size=len(batch["labels"]), sync_dist=True)
        self.log_dict(metrics, batch_size=len(batch["labels"]))
        return logits

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:  # every clip of the batch was skipped (data.on_bad_audio=skip)
            return
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return
        logits = self._eval_step(batch, "test", self.test_metrics)
        self.confusion.update(logits, batch["labels"])
        probs, top = torch.softmax(logits, -1).topk(min(TOP_K, self.num_classes), dim=-1)
        for i, y, p, k in zip(
            batch["index"].tolist(), batch["labels"].tolist(), probs.tolist(), top.tolist()
        ):
            # ref / pred: the run files' one vocabulary (docs/concepts/run-directory.md)
            self.test_rows.append({"index": i, "ref": self.labels[y], "pred": self.labels[k[0]],
                                   "top": [self.labels[j] for j in k], "probs": [round(v, 6) for v in p]})  # fmt: skip

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.confusion.reset()

    def on_test_epoch_end(self) -> None:
        """The confusion matrix, and every test clip's true label (``ref``), prediction (``pred``) and top ones to
        ``test_predictions.jsonl`` (the run report plays the worst-classified clips)."""
        self.test_confusion = self.confusion.compute().cpu()
        self.write_test_rows(self.test_rows_file)

    test_rows_file = "test_predictions.jsonl"

    @classmethod
    def clip_metrics(cls, rows: list[dict]) -> dict[str, ClipMetric]:
        """acc: the mean of per-clip correctness; f1: macro-F1 of (ref, pred) over the clips."""
        labels, preds = [r["ref"] for r in rows], [r["pred"] for r in rows]
        return {
            "acc": mean_metric([float(y == p) for y, p in zip(labels, preds)]),
            "f1": macro_f1_metric(labels, preds),
        }

    def test_artifacts(self) -> dict[str, dict]:
        if self.test_confusion is None:
            return {}
        matrix = self.test_confusion.tolist()
        return {"confusion_matrix.json": {"labels": self.labels, "matrix": matrix}}

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: dataset index, predicted label (``pred``), probability of every class."""
        probs = torch.softmax(self(batch).float(), dim=-1).cpu()
        rows = []
        for i, p in zip(batch["index"].tolist(), probs):
            row = {"index": i, "pred": self.labels[int(p.argmax())], "confidence": round(float(p.max()), 6)}
            row.update({f"prob_{lab}": round(float(v), 6) for lab, v in zip(self.labels, p)})
            rows.append(row)
        return rows
