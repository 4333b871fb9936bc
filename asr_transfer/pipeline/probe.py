"""``probe=lbfgs`` in a training run: fit the head exactly on the cached features, then write a normal
checkpoint (so ``eval.py`` / ``predict.py`` and the test below it work unchanged)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from asr_transfer.probe.lbfgs import Features

log = logging.getLogger(__name__)


def probe_applies(cfg: DictConfig, task, datamodule, trainer) -> bool:
    """A probe is a fit of the head alone on stored pooled vectors, in one process; anything else
    (a trainable backbone, frames, CTC, DDP) trains by minibatch with the optimizer."""
    if not cfg.get("probe"):
        return False
    first = next(iter(datamodule.train_dataloader()), None)
    pooled = first is not None and first.get("features") is not None and first["features"].dim() == 3
    ok = pooled and task.probe_objective() is not None and trainer.world_size == 1
    if not ok:
        log.info(
            "probe=%s applies to classification, tagging and regression on stored pooled features "
            "(frozen backbone, head=linear|mlp) "
            "in one process; this run trains with optimizer=%s instead",
            cfg.probe._target_.rsplit(".", 1)[-1],
            (cfg.get("optimizer") or {}).get("_target_", "?"),
        )
    return ok


def fit_probe(cfg: DictConfig, trainer, task, datamodule, run_dir: Path) -> tuple[str, float]:
    """Fit, validate (the val metrics reach the loggers and metrics.json), checkpoint; returns
    (checkpoint path, chosen L2). The test split is not read here."""
    probe = instantiate(cfg.probe, _convert_="all")
    objective = task.probe_objective()
    key = objective.target_key
    train = Features.from_loader(datamodule.train_dataloader(), "train", key)
    val = (
        Features.from_loader(datamodule.val_dataloader(), "val", key)
        if "val" in datamodule.datasets
        else None
    )
    result = probe.fit(task.featurizer, task.head, train, val, objective)
    write_table(run_dir / "probe.csv", result.table)
    if val is not None:
        trainer.validate(task, datamodule=datamodule, verbose=False)
    else:  # nothing to validate: attach the model so it can be checkpointed
        trainer.strategy.connect(task)
    path = Path(cfg.callbacks.model_checkpoint.dirpath if cfg.get("callbacks") else run_dir / "checkpoints")
    # "best-": the run-directory contract (scripts glob best-*.ckpt); best of the L2 grid on val
    ckpt = path / f"best-lbfgs-l2_{result.l2:g}.ckpt"  # no "=": the path must survive ckpt_path=...
    trainer.save_checkpoint(ckpt)
    return str(ckpt), result.l2


def write_table(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
