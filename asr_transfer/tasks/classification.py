"""Utterance classification (keyword spotting, digits, speaker ID, emotion, intent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from asr_transfer.backbones.base import Backbone
from asr_transfer.data.targets import LabelTargets
from asr_transfer.tasks.base import TransferTask
from asr_transfer.utils.jsonl import write_jsonl

TOP_K = 5  # predictions per clip kept in test_predictions.jsonl (the run report reads them)


class ClassificationTask(TransferTask):
    """Cross-entropy over ``num_classes``; logs loss, accuracy and macro-F1 per split and the test
    confusion matrix. ``head`` is a partial taking ``input_size`` and ``num_classes``."""

    def __init__(
        self,
        backbone: Backbone,
        featurizer: Callable,
        head: Callable,
        optimizer: Callable,
        num_classes: int,
        labels: list[str] | None = None,
        scheduler: Callable | None = None,
        backbone_lr: float | None = None,
        label_smoothing: float = 0.0,
        max_nonfinite_steps: int = 10,
        layer_lr_decay: float | None = None,
        backbone_warmup_steps: int = 0,
        spec_augment=None,
    ) -> None:
        super().__init__(
            backbone, featurizer, optimizer, scheduler, backbone_lr, max_nonfinite_steps,
            layer_lr_decay=layer_lr_decay, backbone_warmup_steps=backbone_warmup_steps,
            spec_augment=spec_augment,
        )  # fmt: skip
        self.head = head(input_size=self.featurizer.output_size, num_classes=num_classes)
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
    def data_kwargs(datamodule) -> dict:
        labels = datamodule.targets.labels
        return {"num_classes": len(labels), "labels": labels}

    @staticmethod
    def checkpoint_kwargs(state: dict) -> dict:
        labels = state["asr_transfer"]["labels"]
        return {"num_classes": len(labels), "labels": labels}

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
            self.test_rows.append({"index": i, "label": self.labels[y], "top": [self.labels[j] for j in k],
                                   "probs": [round(v, 6) for v in p]})  # fmt: skip

    def on_test_epoch_start(self) -> None:
        self.confusion.reset()
        self.test_rows = []

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.confusion.compute().cpu()
        self.write_test_predictions()

    def write_test_predictions(self) -> None:
        """Every test clip's true label and top predictions to ``<run dir>/test_predictions.jsonl``
        (error analysis: the run report plays the worst-classified clips)."""
        if not self.trainer.is_global_zero or not self.trainer.default_root_dir:
            return
        dataset = self.trainer.test_dataloaders.dataset
        entries = getattr(getattr(dataset, "base", dataset), "entries", None)
        rows = sorted(self.test_rows, key=lambda r: r["index"])
        if entries is not None:
            rows = [{"audio_filepath": entries[r["index"]].audio_filepath, **r} for r in rows]
        write_jsonl(Path(self.trainer.default_root_dir) / "test_predictions.jsonl", rows)

    def test_artifacts(self) -> dict[str, dict]:
        if self.test_confusion is None:
            return {}
        matrix = self.test_confusion.tolist()
        return {"confusion_matrix.json": {"labels": self.labels, "matrix": matrix}}

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: dataset index, predicted label, probability of every class."""
        probs = torch.softmax(self(batch).float(), dim=-1).cpu()
        rows = []
        for i, p in zip(batch["index"].tolist(), probs):
            row = {"index": i, "label": self.labels[int(p.argmax())], "confidence": round(float(p.max()), 6)}
            row.update({f"prob_{lab}": round(float(v), 6) for lab, v in zip(self.labels, p)})
            rows.append(row)
        return rows

    def extra_checkpoint_state(self) -> dict:
        return {"labels": self.labels}
