"""Multi-label tagging: any number of tags per clip (sound events, which digits a string holds).

Manifests carry ``"labels": ["dog", "rain"]``. The head's outputs are one logit per tag, trained with
binary cross-entropy. Each tag's decision threshold is the one with the best F1 on the val split
(chosen again at every validation, stored with the weights in the checkpoint), so test and predict
use thresholds the test split never saw. Metrics: mAP (macro average precision over tags), micro and
macro F1 at those thresholds. The exact probe fits it as one-vs-rest logistic regression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score
from torchmetrics.functional.classification import binary_precision_recall_curve

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.data.targets import Targets, natural_key
from asr_transfer.probe.objectives import ONE_VS_REST, Objective
from asr_transfer.tasks.labelled import LabelledTask


class TagTargets(Targets):
    """``labels``: a non-empty list of tag names per row. The tag set is ``data.labels`` or every tag
    of the training split, sorted naturally; batches carry ``labels`` (B, tags) multi-hot floats."""

    field, skippable, required, fault_reason = "labels", True, False, "bad_target"

    def __init__(self) -> None:
        self.labels: list[str] | None = None
        self.index: dict[str, int] = {}

    @staticmethod
    def problem(tags) -> str | None:
        if not isinstance(tags, list) or not tags:
            return f"expected a non-empty list of tags, got {tags!r}"
        if any(not isinstance(t, (str, int)) or str(t).strip() == "" for t in tags):
            return f"every tag must be a non-empty name, got {tags!r}"
        return None

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        faults, good = [], {}
        for split, rows in entries.items():
            for e in rows:
                problem = self.problem(e.get(self.field))
                if problem:
                    faults.append(ManifestError(e.manifest, e.line, f"{problem}; fix the row", self.field))
                else:
                    good.setdefault(split, []).append(e)
        if labels:
            self.labels = [str(t) for t in labels]
        else:
            if not good.get("train"):
                raise ValueError("no training rows with tags to build the tag set from: set data.labels")
            self.labels = sorted({str(t) for e in good["train"] for t in e.get(self.field)}, key=natural_key)
        self.index = {t: i for i, t in enumerate(self.labels)}
        for split, rows in good.items():
            for e in rows:
                unknown = sorted({str(t) for t in e.get(self.field)} - set(self.index))
                if unknown:
                    faults.append(
                        ManifestError(
                            e.manifest,
                            e.line,
                            f"tag(s) {unknown} in the {split} split never occur in training (known: "
                            f"{self.labels[:20]}); add training examples, set data.labels, or drop them",
                            self.field,
                        )
                    )
        return faults

    def encode(self, entry: Entry) -> torch.Tensor:
        y = torch.zeros(len(self.labels))
        y[[self.index[str(t)] for t in entry.get(self.field)]] = 1.0
        return y

    def collate(self, values: list) -> dict:
        return {"labels": torch.stack(values)}


def best_f1_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per tag, the probability threshold with the highest F1 (probs, targets: (clips, tags));
    0.5 for a tag with no positive clip (no curve to choose from)."""
    out = torch.full((probs.shape[1],), 0.5)
    for c in range(probs.shape[1]):
        if targets[:, c].sum() == 0:
            continue
        precision, recall, thresholds = binary_precision_recall_curve(probs[:, c], targets[:, c].long())
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        out[c] = thresholds[int(f1[:-1].argmax())]  # the last point (recall 0) has no threshold
    return out


class TaggingTask(LabelledTask):
    """Binary cross-entropy over ``num_classes`` tags (``labels`` names them). ``parts``:
    ``TransferTask``'s arguments (the head: a partial taking ``input_size`` and ``num_classes``)."""

    exact_probe = True  # probe=lbfgs fits one-vs-rest logistic regression (probe_objective)

    def __init__(self, num_classes: int, labels: list[str] | None = None, **parts) -> None:
        super().__init__(head_sizes={"num_classes": num_classes}, **parts)
        self.num_classes = num_classes
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        # a buffer: saved with the weights, so the checkpoint of the best epoch holds that epoch's thresholds
        self.register_buffer("thresholds", torch.full((num_classes,), 0.5))
        self.val_map = MultilabelAveragePrecision(num_classes, average="macro")
        self.test_metrics = MetricCollection(
            {
                "map": MultilabelAveragePrecision(num_classes, average="macro"),
                "f1_micro": MultilabelF1Score(num_classes, average="micro"),
                "f1_macro": MultilabelF1Score(num_classes, average="macro"),
            },
            prefix="test/",
        )
        self.val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> TagTargets:
        return TagTargets()

    def probe_objective(self) -> Objective:
        return ONE_VS_REST

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(*self.encode(batch)).float()

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """0/1 per tag at the thresholds chosen on val."""
        return (torch.sigmoid(logits) >= self.thresholds).long()

    def training_step(self, batch: dict, batch_idx: int):
        loss = F.binary_cross_entropy_with_logits(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return self.guard_loss(loss)

    def on_validation_epoch_start(self) -> None:
        self.val_outputs = []

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return
        logits = self(batch)
        self.log("val/loss", F.binary_cross_entropy_with_logits(logits, batch["labels"]),
                 batch_size=len(logits), sync_dist=True)  # fmt: skip
        self.val_map.update(logits, batch["labels"].long())
        self.val_outputs.append((torch.sigmoid(logits).cpu(), batch["labels"].cpu()))

    def on_validation_epoch_end(self) -> None:
        """Thresholds from this epoch's val outputs (all ranks'), then val F1 at those thresholds."""
        if not self.val_outputs:
            return
        probs = torch.cat([p for p, _ in self.val_outputs])
        targets = torch.cat([t for _, t in self.val_outputs])
        if self.trainer.world_size > 1:
            probs = self.all_gather(probs.to(self.device)).flatten(0, 1).cpu()
            targets = self.all_gather(targets.to(self.device)).flatten(0, 1).cpu()
        self.thresholds.copy_(best_f1_thresholds(probs, targets).to(self.thresholds))
        decided = (probs >= self.thresholds.cpu()).long()
        f1 = MultilabelF1Score(self.num_classes, average="macro")(decided, targets.long())
        self.log("val/map", self.val_map.compute())
        self.log("val/f1_macro", f1)
        self.val_map.reset()

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return
        logits, y = self(batch), batch["labels"].long()
        self.test_metrics["map"].update(logits, y)
        for name in ("f1_micro", "f1_macro"):
            self.test_metrics[name].update(self.decide(logits), y)
        self.log_dict(self.test_metrics, batch_size=len(y))
        for i, p, t in zip(batch["index"].tolist(), torch.sigmoid(logits).tolist(), y.tolist()):
            self.test_rows.append({"index": i, "labels": self.names(t), "predicted": self.names(self.decide_row(p)),
                                   "probs": [round(v, 6) for v in p]})  # fmt: skip

    def decide_row(self, probs: list[float]) -> list[int]:
        return [int(p >= float(t)) for p, t in zip(probs, self.thresholds)]

    def names(self, flags: list[int]) -> list[str]:
        return [lab for lab, f in zip(self.labels, flags) if f]

    def on_test_epoch_end(self) -> None:
        self.write_test_rows("test_predictions.jsonl")

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: the tags above their thresholds (space-separated) and every tag's probability."""
        probs = torch.sigmoid(self(batch)).cpu()
        rows = []
        for i, p in zip(batch["index"].tolist(), probs):
            row = {"index": i, "labels": " ".join(self.names(self.decide_row(p.tolist())))}
            row.update({f"prob_{lab}": round(float(v), 6) for lab, v in zip(self.labels, p)})
            rows.append(row)
        return rows
