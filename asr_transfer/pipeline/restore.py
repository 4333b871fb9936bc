"""Rebuild a trained model from a checkpoint alone: its resolved config travels inside it."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from asr_transfer.pipeline.build import build_backbone, build_task, task_class
from asr_transfer.utils.errors import ConfigError, MissingPathError


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """``weights_only=True``: a checkpoint holds tensors and plain containers only, so loading runs no code.
    ``mmap``: tensors are mapped, not read (for a look at the config only)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(
            "no such checkpoint", f"ckpt_path={path}", "point ckpt_path at a file in <run dir>/checkpoints/"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # not a torch file, or a truncated one
        raise ConfigError(
            f"not a readable checkpoint ({type(e).__name__})",
            f"ckpt_path={path}",
            "point ckpt_path at a train.py run's <run dir>/checkpoints/*.ckpt",
        ) from e
    if "asr_transfer" not in state or not state["asr_transfer"].get("config"):
        raise ConfigError(
            "not a checkpoint written by asr_transfer (no resolved config inside)",
            f"ckpt_path={path}",
            "point ckpt_path at a train.py run's <run dir>/checkpoints/*.ckpt",
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
