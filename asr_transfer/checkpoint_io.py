"""Checkpoints that survive ``kill -9``: Lightning's CheckpointIO plugin with atomic writes.

Lightning's own save goes through an fsspec transaction whose temporary file lives in the system
temp folder; when that is another filesystem the final "move" is a copy, and a kill during the
copy leaves a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes next to the target, fsyncs,
and renames: a reader sees the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from asr_transfer.utils.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``trainer.plugins``: save = temp file in the same folder + fsync + ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        # fsync: the bytes are on disk before the name points at them
        with atomic_open(path, "wb", fsync=True) as f:
            torch.save(checkpoint, f)
