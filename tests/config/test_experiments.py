"""Every ``experiment=`` preset runs end to end with ``trainer.fast_dev_run=true``."""

from __future__ import annotations

import json
import math

import pytest

from asr_transfer.pipeline.train import train
from tests.config.small import compose_small
from tests.conftest import CONF

# ----- (2) every experiment preset runs end to end ------------------------------------------------------
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(experiment, tmp_path, assets, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_small(f"experiment={experiment}", tmp_path, assets, extra=("++trainer.fast_dev_run=true",))
    result = train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tested and all(math.isfinite(v) for v in tested.values()), metrics
    assert result is None or math.isfinite(result)
