"""Checkpoints: written so they survive ``kill -9`` (Lightning's CheckpointIO plugin with atomic
writes), read without running code (``load_checkpoint``).

Lightning's own save goes through an fsspec transaction whose temporary file lives in the system
temp folder; when that is another filesystem the final "move" is a copy, and a kill during the
copy leaves a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes next to the target, fsyncs,
and renames: a reader sees the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from asr_transfer.utils.atomic import atomic_open
from asr_transfer.utils.errors import ConfigError, MissingPathError, first_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """``trainer.plugins``: save = temp file in the same folder + fsync + ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        # fsync: the bytes are on disk before the name points at them
        with atomic_open(path, "wb", fsync=True) as f:
            torch.save(checkpoint, f)


class CheckpointError(ConfigError):
    """A ``ckpt_path`` that cannot be used; the message is one line naming it and the fix."""


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
    except pickle.UnpicklingError as e:  # an object outside weights_only's allow-list: never run its code
        raise CheckpointError(
            f"the checkpoint holds objects that safe loading (weights_only=True) refuses ({first_line(e)})",
            f"ckpt_path={path}",
            "use a checkpoint written by this project's train.py, or re-save it with tensors and plain "
            "containers only",
        ) from None
    except (RuntimeError, EOFError) as e:  # not a torch file at all (truncated, another format)
        raise CheckpointError(
            f"not a readable checkpoint ({first_line(e)})",
            f"ckpt_path={path}",
            "point ckpt_path at a train.py run's <run dir>/checkpoints/*.ckpt",
        ) from None
    if "asr_transfer" not in state or not state["asr_transfer"].get("config"):
        raise CheckpointError(
            "not a checkpoint written by asr_transfer (no resolved config inside)",
            f"ckpt_path={path}",
            "point ckpt_path at a train.py run's <run dir>/checkpoints/*.ckpt",
        )
    return state
