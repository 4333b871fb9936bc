"""A split's clips read back from feature shards: what the datamodule serves once features are stored."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from asr_transfer.data.manifest import Entry
from asr_transfer.features.store import NUMPY, Where


class FeatureDataset(Dataset):
    """Items like ``AudioDataset``'s with ``features`` instead of ``wav``: (L, D) pooled or (L, T, D) frames.

    Clips are read lazily with ``os.pread`` (one read per item, no mapping): resident memory does
    not grow with the corpus, and the page cache, not this process, holds what was read. File
    handles are opened per process, so DataLoader workers (``data.num_workers > 0``) each open
    their own. ``take``: positions of the featurizer's layers among the stored ones, in its order.
    """

    def __init__(
        self,
        folder: str | Path,
        dtype: str,
        stored: tuple[int, int],
        take: list[int],
        pooled: bool,
        entries: list[Entry],
        where: list[Where],
        positions: list[int],
        base: Dataset,
    ) -> None:
        self.folder, self.dtype = str(folder), dtype
        self.stored, self.take = tuple(stored), list(take)
        # base: the split's AudioDataset, whose target_item(i) gives what the task's collate reads
        self.entries, self.positions, self.base = entries, positions, base
        self.shard_names = sorted({w.shard for w in where})
        number = {s: i for i, s in enumerate(self.shard_names)}
        self.shard = np.array([number[w.shard] for w in where], dtype=np.int32)
        self.row = np.array([w.row for w in where], dtype=np.int64)
        self.rows = np.array([w.rows for w in where], dtype=np.int64)
        self.frames = np.array([w.frames for w in where], dtype=np.int64)
        self.pooled = pooled
        self._fds: dict[int, int] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [e.duration or 0.0 for e in self.entries]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = {}, None  # a worker opens its own handles
        return state

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(
                os.path.join(self.folder, f"{self.shard_names[shard]}.bin"), os.O_RDONLY
            )
        return fd

    def read(self, i: int) -> torch.Tensor:
        """Clip ``i``'s stored rows: (rows, layers stored, hidden) in the storage dtype."""
        n_layers, hidden = self.stored
        item = np.dtype(NUMPY[self.dtype]).itemsize
        row_bytes = n_layers * hidden * item
        buf = os.pread(
            self._fd(int(self.shard[i])), int(self.rows[i]) * row_bytes, int(self.row[i]) * row_bytes
        )
        arr = torch.from_numpy(np.frombuffer(buf, dtype=NUMPY[self.dtype]).copy())
        if self.dtype == "bfloat16":
            arr = arr.view(torch.bfloat16)
        return arr.view(int(self.rows[i]), n_layers, hidden)

    def __getitem__(self, i: int) -> dict:
        feats = self.read(i)
        if len(self.take) != self.stored[0]:
            feats = feats[:, self.take]
        feats = feats.float()
        # pooled: one row (L, D); frames: (T, L, D) -> (L, T, D) as the collate pads frames
        feats = feats[0] if self.pooled else feats.transpose(0, 1)
        item = {"features": feats, "frame_length": int(self.frames[i]), "index": self.positions[i]}
        return {**item, **self.base.target_item(self.positions[i])}
