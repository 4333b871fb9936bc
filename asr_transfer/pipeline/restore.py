"""Rebuild a trained model from a checkpoint alone: its resolved config travels inside it."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from asr_transfer.pipeline.build import build_backbone, build_task, task_class


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """``weights_only=True``: a checkpoint holds tensors and plain containers only, so loading runs no code.
    ``mmap``: tensors are mapped, not read (for a look at the config only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no such checkpoint (see <run dir>/checkpoints/)")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if "asr_transfer" not in state or not state["asr_transfer"].get("config"):
        raise ValueError(
            f"ckpt_path={str(path)!r} was not written by asr_transfer (no resolved config inside)"
        )
    return state


def restore_config(state: dict, data_cfg: DictConfig | None = None, task_overrides: dict | None = None):
    """The training run's config; ``data_cfg`` replaces its data, each ``task_overrides`` entry
    replaces that key of the task's config (e.g. CTC's ``decoding``)."""
    cfg = OmegaConf.create(state["asr_transfer"]["config"])
    if data_cfg is not None:
        cfg.data = data_cfg
    for key, value in (task_overrides or {}).items():
        cfg.task[key] = value
    return cfg


def restore_task(cfg: DictConfig, backbone, state: dict):
    """The trained task around ``backbone`` (the real one, or the card of stored features)."""
    task = build_task(cfg, backbone, **task_class(cfg).checkpoint_kwargs(state))
    task.load_state_dict(state["state_dict"])
    task.eval()
    return task


def restore(state: dict, data_cfg: DictConfig | None = None, task_overrides: dict | None = None):
    """(config, real backbone, task) from a checkpoint state: for raw audio (predict)."""
    cfg = restore_config(state, data_cfg, task_overrides)
    backbone = build_backbone(cfg)
    return cfg, backbone, restore_task(cfg, backbone, state)


def task_overrides(cfg: DictConfig) -> dict:
    """Task settings an eval/predict config may replace: ``decoding=...`` (CTC) when given."""
    return {"decoding": cfg.decoding} if cfg.get("decoding") else {}
