"""Regression: one or more real targets per clip (quality or MOS, speaking rate, age, how many words).

Manifests carry ``"target": 3.5`` or ``"target": [3.5, 1.0]``. The head predicts standardised targets
(the training split's mean and standard deviation, kept with the weights in the checkpoint), so one
learning rate and one L2 grid suit targets of any scale; metrics and predictions are in the targets'
own units: MSE, MAE, Pearson and Spearman correlation (averaged over outputs when there are several).
The exact probe fits it as ridge regression.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    MetricCollection,
    PearsonCorrCoef,
    SpearmanCorrCoef,
)

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.data.targets import Targets
from asr_transfer.probe.objectives import Objective, squared_error
from asr_transfer.tasks.base import TransferTask


class RealTargets(Targets):
    """``target``: a finite number or a list of them, the same length on every row; batches carry
    ``targets`` (B, outputs). ``fit`` keeps the training split's mean and standard deviation."""

    field, skippable, required, fault_reason = "target", True, False, "bad_target"

    def __init__(self) -> None:
        self.size: int | None = None
        self.mean: list[float] = []
        self.std: list[float] = []

    @staticmethod
    def values(raw) -> list[float] | str:
        """The row's target as a list of floats, or what is wrong with it."""
        items = raw if isinstance(raw, list) else [raw]
        if raw is None or not items:
            return "missing target: give a number or a list of numbers"
        try:
            out = [float(v) for v in items]
        except (TypeError, ValueError):
            return f"not a number: {raw!r}"
        if not all(math.isfinite(v) for v in out):
            return f"not finite: {raw!r}"
        return out

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        faults, train = [], []
        sizes = [
            len(v) for e in entries.get("train", []) if isinstance(v := self.values(e.get(self.field)), list)
        ]
        self.size = (
            max(set(sizes), key=sizes.count) if sizes else None
        )  # the usual length (a stray row is the fault)
        for split, rows in entries.items():
            for e in rows:
                v = self.values(e.get(self.field))
                if isinstance(v, list) and self.size is not None and len(v) != self.size:
                    v = f"{len(v)} value(s), the training rows have {self.size}"
                if isinstance(v, str):
                    faults.append(ManifestError(e.manifest, e.line, f"{v}; fix the row", self.field))
                elif split == "train":
                    train.append(v)
        if not train:
            if not faults:
                raise ValueError("no training rows with a target: regression needs a training split")
            return faults
        y = torch.tensor(train, dtype=torch.float64)
        self.mean = y.mean(0).tolist()
        # a constant target keeps scale 1 (nothing to standardise)
        self.std = [s if s > 0 else 1.0 for s in y.std(0, unbiased=False).tolist()]
        return faults

    def encode(self, entry: Entry) -> torch.Tensor:
        return torch.tensor(self.values(entry.get(self.field)), dtype=torch.float32)

    def collate(self, values: list) -> dict:
        return {"targets": torch.stack(values)}


class RegressionTask(TransferTask):
    """Mean squared error on standardised targets. ``num_outputs``: values per clip; ``target_mean``,
    ``target_std``: the training split's (from the data, or the checkpoint). ``parts``: ``TransferTask``'s
    arguments (the head: a partial taking ``input_size`` and ``num_classes``, here the outputs)."""

    exact_probe = True  # probe=lbfgs fits ridge regression (probe_objective)

    def __init__(
        self,
        num_outputs: int,
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
        **parts,
    ) -> None:
        super().__init__(head_sizes={"num_classes": num_outputs}, **parts)
        self.num_outputs = num_outputs
        self.register_buffer("target_mean", torch.tensor(target_mean or [0.0] * num_outputs))
        self.register_buffer("target_std", torch.tensor(target_std or [1.0] * num_outputs))
        metrics = MetricCollection(
            {
                "mse": MeanSquaredError(num_outputs=num_outputs),
                "mae": MeanAbsoluteError(),
                "pearson": PearsonCorrCoef(num_outputs=num_outputs),
                "spearman": SpearmanCorrCoef(num_outputs=num_outputs),
            }
        )
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> RealTargets:
        return RealTargets()

    @staticmethod
    def data_kwargs(datamodule) -> dict:
        t = datamodule.targets
        return {"num_outputs": t.size, "target_mean": t.mean, "target_std": t.std}

    @staticmethod
    def checkpoint_kwargs(state: dict) -> dict:
        s = state["asr_transfer"]
        return {
            "num_outputs": len(s["target_mean"]),
            "target_mean": s["target_mean"],
            "target_std": s["target_std"],
        }

    def extra_checkpoint_state(self) -> dict:
        return {"target_mean": self.target_mean.tolist(), "target_std": self.target_std.tolist()}

    def probe_objective(self) -> Objective:
        return squared_error(self.target_mean, self.target_std)

    def forward(self, batch: dict) -> torch.Tensor:
        """Standardised predictions (B, outputs)."""
        return self.head(*self.encode(batch)).float()

    def predict_values(self, batch: dict) -> torch.Tensor:
        """Predictions in the targets' units (B, outputs)."""
        return self(batch) * self.target_std + self.target_mean

    def training_step(self, batch: dict, batch_idx: int):
        z = (batch["targets"] - self.target_mean) / self.target_std
        loss = F.mse_loss(self(batch), z)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(z))
        return self.guard_loss(loss)

    def _eval_step(self, batch: dict, split: str, metrics: MetricCollection) -> torch.Tensor:
        pred, y = self.predict_values(batch), batch["targets"]
        z = (y - self.target_mean) / self.target_std
        self.log(f"{split}/loss", F.mse_loss((pred - self.target_mean) / self.target_std, z),
                 batch_size=len(y), sync_dist=True)  # fmt: skip
        one = self.num_outputs == 1  # torchmetrics' correlations want (N,) for one output
        for metric in metrics.values():
            metric.update(pred.squeeze(-1) if one else pred, y.squeeze(-1) if one else y)
        return pred

    def _log_epoch(self, metrics: MetricCollection) -> None:
        """Each metric averaged over outputs (correlations are per output)."""
        for name, metric in metrics.items():
            self.log(name, metric.compute().float().mean())
            metric.reset()

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is not None:
            self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics)

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return
        pred = self._eval_step(batch, "test", self.test_metrics)
        for i, p, t in zip(batch["index"].tolist(), pred.tolist(), batch["targets"].tolist()):
            self.test_rows.append({"index": i, "target": t, "predicted": [round(v, 6) for v in p]})

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics)
        self.write_test_rows("test_predictions.jsonl")

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: ``target`` (one output) or ``target_0``, ``target_1``... in the targets' units."""
        pred = self.predict_values(batch).cpu()
        if self.num_outputs == 1:
            return [{"index": i, "target": round(float(p), 6)} for i, p in zip(batch["index"].tolist(), pred)]
        return [
            {"index": i, **{f"target_{k}": round(float(v), 6) for k, v in enumerate(p)}}
            for i, p in zip(batch["index"].tolist(), pred)
        ]
