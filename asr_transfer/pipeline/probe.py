"""``probe=lbfgs`` in a training run (when the run plan says ``fit_with == "probe"``): fit the head
exactly on the stored features, then write a normal checkpoint (so ``eval.py`` / ``predict.py`` and
the test below it work unchanged)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from asr_transfer.probe.lbfgs import Features
from asr_transfer.utils.atomic import write_csv


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
    write_csv(run_dir / "probe.csv", result.table)
    if val is not None:
        trainer.validate(task, datamodule=datamodule, verbose=False)
    else:  # nothing to validate: attach the model so it can be checkpointed
        trainer.strategy.connect(task)
    path = Path(cfg.callbacks.model_checkpoint.dirpath if cfg.get("callbacks") else run_dir / "checkpoints")
    # "best-": the run-directory contract (scripts glob best-*.ckpt); best of the L2 grid on val
    ckpt = path / f"best-lbfgs-l2_{result.l2:g}.ckpt"  # no "=": the path must survive ckpt_path=...
    trainer.save_checkpoint(ckpt, weights_only=False)  # said, so Lightning does not warn; loads use True
    return str(ckpt), result.l2
