"""What a run leaves in its run directory (DESIGN.md's contract): ``metrics.json`` with flat final
metrics and the task's test artifacts (e.g. ``confusion_matrix.json``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from asr_transfer.utils.atomic import write_json


def output_dir(cfg: DictConfig) -> Path:
    try:
        return Path(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001 - ${hydra:...} outside a Hydra app
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)


def flat_metrics(metrics: dict) -> dict[str, float]:
    """Scalar metrics as plain floats (tensors of one value included; anything else left out).

    Metrics are computed in float32, which holds about 7 significant digits; read out as a float64 one
    gains noise digits (an F1 of 1 read as 1.0000001192092896), so each is rounded to 7 significant
    digits (whole numbers, such as counts, are kept as they are)."""
    out = {}
    for k, v in metrics.items():
        if torch.is_tensor(v) and v.numel() == 1 or isinstance(v, int | float):
            v = float(v)
            out[k] = v if v.is_integer() or not math.isfinite(v) else float(f"{v:.7g}")
    return out


def write_results(run_dir: Path, metrics: dict[str, float], task, stats=None) -> dict[str, float]:
    """``metrics.json`` and every file of ``task.test_artifacts()``. ``stats``: the ``stats`` config
    (``conf/stats/``): the test metrics' intervals over test clips join the metrics. Returns what was written."""
    if stats:
        metrics = {**metrics, **instantiate(stats).intervals(task.test_clip_metrics())}
    write_json(run_dir / "metrics.json", metrics)
    for name, content in task.test_artifacts().items():
        write_json(run_dir / name, content)
    return metrics
