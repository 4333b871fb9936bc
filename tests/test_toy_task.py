"""A new task type is one module and one YAML: regression of each clip's duration, trained end to end
through train.py's pipeline (feature cache, checkpoints, test, metrics.json) and predict_rows."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchmetrics import MeanAbsoluteError

from asr_transfer.data.targets import Targets
from asr_transfer.pipeline.train import train
from asr_transfer.tasks.base import TransferTask
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides


# ----- the module (what a new task type writes) --------------------------------------------------
class DurationTargets(Targets):
    field, crop_ok = "duration", False  # a crop would change the target

    def collate(self, values: list) -> dict:
        return {"durations": torch.tensor(values, dtype=torch.float32)}


class DurationRegression(TransferTask):
    def __init__(self, **parts) -> None:
        super().__init__(head_sizes={"num_classes": 1}, **parts)
        self.val_mae, self.test_mae = MeanAbsoluteError(), MeanAbsoluteError()

    @classmethod
    def make_targets(cls) -> Targets:
        return DurationTargets()

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(*self.encode(batch)).squeeze(-1).float()

    def training_step(self, batch: dict, batch_idx: int):
        loss = F.mse_loss(self(batch), batch["durations"])
        self.log("train/loss", loss, batch_size=len(batch["durations"]))
        return self.guard_loss(loss)

    def _eval(self, batch: dict, split: str, mae) -> None:
        mae.update(self(batch), batch["durations"])
        self.log(f"{split}/mae", mae, batch_size=len(batch["durations"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval(batch, "val", self.val_mae)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval(batch, "test", self.test_mae)

    def predict_rows(self, batch: dict) -> list[dict]:
        return [{"index": i, "duration": float(d)} for i, d in zip(batch["index"].tolist(), self(batch))]


# ----- the YAML (conf/task/duration.yaml) ---------------------------------------------------------
TASK_YAML = """
_target_: tests.test_toy_task.DurationRegression
max_nonfinite_steps: 10
"""


def test_toy_regression_task_trains_end_to_end(tmp_path, tone_corpus):
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "head=linear"]
    over += ["optimizer.lr=0.05", "trainer.max_epochs=15", "data.batch_size=4", "optimized_metric=val/mae"]
    cfg = compose_train([*over, "optimized_mode=min"], tmp_path / "run")
    cfg.task = OmegaConf.create(TASK_YAML)
    assert train(cfg) is not None
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    durations = [json.loads(x)["duration"] for x in tone_corpus["test"].read_text().splitlines()]
    mean = sum(durations) / len(durations)
    # it learned the scale of its target: far better than predicting zero, and no worse than the
    # best constant could be off (the spread of the test durations around their mean)
    assert metrics["test/mae"] < 0.5 * mean
    assert metrics["test/mae"] < max(abs(d - mean) for d in durations) + 0.05
