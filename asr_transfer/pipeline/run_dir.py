"""What a run leaves in its run directory (DESIGN.md's contract): ``metrics.json`` with flat final
metrics and the task's test artifacts (e.g. ``confusion_matrix.json``)."""

from __future__ import annotations

from pathlib import Path

import torch
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

    A float32 tensor holds about 7 significant digits; written out as a float64 it gains noise digits
    (an F1 of 1 read as 1.0000001192092896), so it is rounded to the digits it has."""
    out = {}
    for k, v in metrics.items():
        if torch.is_tensor(v) and v.numel() == 1:
            digits = {torch.float16: 4, torch.bfloat16: 3, torch.float32: 7}.get(v.dtype)
            out[k] = float(f"{float(v):.{digits}g}") if digits else float(v)
        elif isinstance(v, int | float):
            out[k] = float(v)
    return out


def write_results(run_dir: Path, metrics: dict[str, float], task) -> None:
    """``metrics.json`` and every file of ``task.test_artifacts()``."""
    write_json(run_dir / "metrics.json", metrics)
    for name, content in task.test_artifacts().items():
        write_json(run_dir / name, content)
