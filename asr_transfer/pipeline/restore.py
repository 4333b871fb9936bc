"""Rebuild a trained model from a checkpoint alone: its resolved config travels inside it."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from asr_transfer.pipeline.build import Parts, build_parts, build_run_task, task_class
from asr_transfer.pipeline.plan import make_plan


def restore_config(state: dict, data_cfg: DictConfig | None = None, task_overrides: dict | None = None):
    """The training run's config; ``data_cfg`` replaces its data, each ``task_overrides`` entry
    replaces that key of the task's config (e.g. CTC's ``decoding``)."""
    cfg = OmegaConf.create(state["asr_transfer"]["config"])
    if data_cfg is not None:
        cfg.data = data_cfg
    for key, value in (task_overrides or {}).items():
        cfg.task[key] = value
    return cfg


def restore_task(cfg: DictConfig, parts: Parts, state: dict):
    """The trained task around ``parts`` (the real backbone, or the card of stored features)."""
    task = build_run_task(cfg, parts, **task_class(cfg).checkpoint_kwargs(state))
    task.load_state_dict(state["state_dict"])
    task.eval()
    return task


def restore(state: dict, data_cfg: DictConfig | None = None, task_overrides: dict | None = None):
    """(config, parts, task) for raw audio (predict): the real backbone, and the datamodule built for
    its clip rules only (``corpus=None``: no corpus is read; the inputs are the clips)."""
    cfg = restore_config(state, data_cfg, task_overrides)
    parts = build_parts(cfg, make_plan(cfg, "predict"), corpus=None, run_dir=None)
    return cfg, parts, restore_task(cfg, parts, state)


def task_overrides(cfg: DictConfig) -> dict:
    """Task settings an eval/predict config may replace: ``decoding=...`` (CTC) when given."""
    return {"decoding": cfg.decoding} if cfg.get("decoding") else {}
