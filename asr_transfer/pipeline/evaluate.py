"""``eval.py``: test a checkpoint on its own test split (edited by ``data.*``, or ``data=<corpus>``); ``metrics.json``."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, OmegaConf

from asr_transfer.pipeline.build import build_data, store_features
from asr_transfer.pipeline.restore import load_checkpoint, restore_config, restore_task, task_overrides
from asr_transfer.pipeline.run_dir import flat_metrics, output_dir, write_results

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    run_dir = output_dir(cfg)
    state = load_checkpoint(cfg.ckpt_path)
    data_cfg = cfg.get("data") or None  # data=checkpoint (edited by data.* overrides) or data=<corpus>
    train_cfg = restore_config(state, data_cfg, task_overrides(cfg))
    if not cfg.get("use_cache", True) and train_cfg.get("features"):
        train_cfg.features.mode = "off"
    overrides = {"run_dir": str(run_dir), "train": False}  # no waveform augmentation in eval
    if "labels" in state["asr_transfer"]:
        overrides["labels"] = state["asr_transfer"]["labels"]  # the trained class order, whatever the data
    backbone, datamodule, features = build_data(train_cfg, "test", **overrides)
    if features is not None:
        backbone, datamodule, _ = store_features(train_cfg, features, backbone, datamodule, **overrides)
    task = restore_task(train_cfg, backbone, state)
    trainer_cfg = OmegaConf.merge(train_cfg.trainer, cfg.get("trainer") or {})
    bar = [RichProgressBar()] if trainer_cfg.get("enable_progress_bar", True) else []
    trainer = instantiate(trainer_cfg, logger=False, callbacks=bar, devices=1, default_root_dir=str(run_dir))
    results = trainer.test(task, datamodule=datamodule, verbose=False)
    metrics = flat_metrics(results[0] if results else {})
    write_results(run_dir, metrics, task)
    log.info(
        "eval of %s\n  %s", cfg.ckpt_path, "\n  ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items()))
    )
    return metrics


def zero_shot(cfg: DictConfig) -> dict[str, float]:
    """``eval.py`` without ``ckpt_path``: the pretrained model as it is (``TransferTask.zero_shot``: a
    pretrained head such as Whisper's decoder), composed from train.yaml like a training run
    (``experiment=...``), scored on the same val and test splits, normalisation and metrics."""
    import lightning as L

    from asr_transfer.pipeline.build import build_task, task_class

    if not task_class(cfg).zero_shot:
        raise ValueError(
            f"eval.py without ckpt_path scores a pretrained model as it is, but {cfg.task._target_} builds a "
            "new head that must be trained first: give ckpt_path=<run dir>/checkpoints/<best>.ckpt"
        )
    run_dir = output_dir(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    overrides = {"train": False}  # no waveform augmentation
    backbone, datamodule, features = build_data(cfg, **overrides)
    if features is not None:
        backbone, datamodule, _ = store_features(cfg, features, backbone, datamodule, **overrides)
    task = build_task(cfg, backbone, **task_class(cfg).data_kwargs(datamodule)).eval()
    bar = [RichProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    trainer = instantiate(cfg.trainer, logger=False, callbacks=bar, devices=1, default_root_dir=str(run_dir))
    metrics = task.parameter_counts()
    if "val" in datamodule.datasets:
        metrics.update(flat_metrics(trainer.validate(task, datamodule=datamodule, verbose=False)[0]))
    if "test" in datamodule.datasets:
        metrics.update(flat_metrics(trainer.test(task, datamodule=datamodule, verbose=False)[0]))
    write_results(run_dir, metrics, task)
    log.info("zero-shot eval\n  %s", "\n  ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items())))
    return metrics
