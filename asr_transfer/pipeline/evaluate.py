"""``eval.py``: test a checkpoint on its own test split (edited by ``data.*``, or ``data=<corpus>``); ``metrics.json``."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, OmegaConf

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.data.leakage import overlap
from asr_transfer.pipeline.build import build_parts, task_class
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.restore import restore_config, restore_task, task_overrides
from asr_transfer.pipeline.results import flat_metrics, output_dir, write_results

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    run_dir = output_dir(cfg)
    state = load_checkpoint(cfg.ckpt_path)
    data_cfg = cfg.get("data") or None  # data=checkpoint (edited by data.* overrides) or data=<corpus>
    train_cfg = restore_config(state, data_cfg, task_overrides(cfg))
    if not cfg.get("use_cache", True) and train_cfg.get("features"):
        train_cfg.features.mode = "off"
    plan = make_plan(train_cfg, "test")  # no waveform augmentation in eval
    # the checkpoint fixes what the data must agree with (the trained class order, whatever the data)
    data_kwargs = task_class(train_cfg).checkpoint_data_kwargs(state)
    parts = build_parts(train_cfg, plan, run_dir=str(run_dir), **data_kwargs)
    parts.datamodule.prepare_data()
    parts.datamodule.setup("test")
    datamodule, task = parts.datamodule, restore_task(train_cfg, parts, state)
    trainer_cfg = OmegaConf.merge(train_cfg.trainer, cfg.get("trainer") or {})
    bar = [RichProgressBar()] if trainer_cfg.get("enable_progress_bar", True) else []
    trainer = instantiate(trainer_cfg, logger=False, callbacks=bar, devices=1, default_root_dir=str(run_dir))
    results = trainer.test(task, datamodule=datamodule, verbose=False)
    metrics = flat_metrics(results[0] if results else {})
    metrics = write_results(run_dir, metrics, task, cfg.get("stats"))
    log.info(
        "eval of %s\n  %s\nresults in %s",
        cfg.ckpt_path,
        "\n  ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items())),
        run_dir,
    )
    leak = overlap(
        state["asr_transfer"].get("training_data"), datamodule.entries.get("test", []), "test clips"
    )
    if leak:
        log.warning("%s", leak)
    return metrics


def zero_shot(cfg: DictConfig) -> dict[str, float]:
    """``eval.py`` without ``ckpt_path``: the pretrained model as it is (``TransferTask.zero_shot``: a
    pretrained head such as Whisper's decoder), composed from train.yaml like a training run
    (``experiment=...``), scored on the same val and test splits, normalisation and metrics."""
    import lightning as L

    from asr_transfer.pipeline.build import build_run_task

    if not task_class(cfg).zero_shot:
        raise ValueError(
            f"eval.py without ckpt_path scores a pretrained model as it is, but {cfg.task._target_} builds a "
            "new head that must be trained first: give ckpt_path=<run dir>/checkpoints/<best>.ckpt"
        )
    run_dir = output_dir(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    plan = make_plan(cfg, "test")  # no waveform augmentation; the same store a training run reads
    parts = build_parts(cfg, plan, run_dir=str(run_dir))
    datamodule = parts.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")  # val and test, both scored
    task = build_run_task(cfg, parts, **task_class(cfg).data_kwargs(datamodule)).eval()
    bar = [RichProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    trainer = instantiate(cfg.trainer, logger=False, callbacks=bar, devices=1, default_root_dir=str(run_dir))
    metrics = task.parameter_counts()
    if "val" in datamodule.datasets:
        metrics.update(flat_metrics(trainer.validate(task, datamodule=datamodule, verbose=False)[0]))
    if "test" in datamodule.datasets:
        metrics.update(flat_metrics(trainer.test(task, datamodule=datamodule, verbose=False)[0]))
    metrics = write_results(run_dir, metrics, task, cfg.get("stats"))
    log.info("zero-shot eval\n  %s", "\n  ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items())))
    return metrics
