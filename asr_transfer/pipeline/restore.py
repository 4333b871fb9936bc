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


def restore(state: dict, data_cfg: DictConfig | None = None, task_overrides: dict | None = None):
    """(config, backbone, cache mode, task) from a checkpoint state; ``data_cfg`` replaces the training data,
    each ``task_overrides`` entry replaces that key of the task's config (e.g. CTC's ``decoding``)."""
    cfg = OmegaConf.create(state["asr_transfer"]["config"])
    if data_cfg is not None:
        cfg.data = data_cfg
    for key, value in (task_overrides or {}).items():
        cfg.task[key] = value
    backbone, cache_mode = build_backbone(cfg)
    task = build_task(cfg, backbone, **task_class(cfg).checkpoint_kwargs(state))
    task.load_state_dict(state["state_dict"])
    task.eval()
    return cfg, backbone, cache_mode, task


def task_overrides(cfg: DictConfig) -> dict:
    """Task settings an eval/predict config may replace: ``decoding=...`` (CTC) when given."""
    return {"decoding": cfg.decoding} if cfg.get("decoding") else {}
