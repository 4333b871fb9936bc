"""Shards of frozen features on disk, and the index that says which clip lives where.

A *spec folder* (one per backbone weights, layers kept, pooled or frames, dtype, audio settings)
holds shards. A shard is two files:

- ``<name>.bin``: raw rows of ``width = layers x hidden`` values in the storage dtype; a clip is
  one row (pooled) or one row per frame (frames), stored back to back;
- ``<name>.json``: its index part: byte size, CRC-32, and per clip ``[clip id, first row, rows,
  frames]`` (clips that failed to decode are listed as ``bad``, so they are not retried).

The ``.bin`` is streamed to a temporary name while clips are encoded, renamed when the shard is
full, and only then is the ``.json`` written (atomically). So a shard is either committed (both
files, size and checksum match) or ignored: a killed pass loses at most the shard it was
writing, and a damaged file is detected, dropped and its clips encoded again. The index is the
union of every committed shard's ``.json``; a clip found in several shards is read from one.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_transfer.utils.atomic import write_json

log = logging.getLogger(__name__)
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
# numpy has no bfloat16: those bytes are read as int16 and reinterpreted by torch
NUMPY = {"float16": np.float16, "float32": np.float32, "bfloat16": np.int16}
STALE_TMP_S = 15 * 60  # a writer touches its temp file every batch; older ones were left by a killed pass
CHUNK = 16 << 20


@dataclass(frozen=True)
class Where:
    """Where one clip's features are: shard, first row, rows, frame length."""

    shard: str
    row: int
    rows: int
    frames: int


def file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


class ShardIndex:
    """The committed shards of one spec folder: ``clips`` maps clip id -> ``Where`` (or None: bad audio)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.clips: dict[str, Where | None] = {}
        self.shards: set[str] = set()
        self._checked: dict[str, tuple[int, int]] = {}  # shard -> (size, mtime) verified in this process

    def refresh(self) -> ShardIndex:
        """Read every committed shard's index part (verifying shards not seen yet); drop damaged ones."""
        if not self.folder.is_dir():
            return self
        for part in sorted(self.folder.glob("r*.json")):  # shard parts; spec.json describes the folder
            name = part.stem
            if name in self.shards:
                continue
            reason = self._check(part)
            if reason:
                log.warning(
                    "features: shard %s is %s; its clips will be encoded again",
                    part.with_suffix(".bin"),
                    reason,
                )
                for p in (part, part.with_suffix(".bin")):
                    p.unlink(missing_ok=True)
                continue
            meta = json.loads(part.read_text())
            for cid, row, rows, frames in meta["clips"]:
                self.clips.setdefault(cid, Where(name, row, rows, frames))
            for cid in meta.get("bad", []):
                self.clips.setdefault(cid, None)
            self.shards.add(name)
        return self

    def _check(self, part: Path) -> str | None:
        """Why this shard cannot be trusted, or None. Size every time, CRC once per process."""
        try:
            meta = json.loads(part.read_text())
            data = part.with_suffix(".bin")
            st = data.stat()
        except (OSError, ValueError) as e:
            return f"unreadable ({e})"
        if st.st_size != meta.get("bytes"):
            return f"partial ({st.st_size} bytes, index says {meta.get('bytes')})"
        if self._checked.get(part.stem) != (st.st_size, st.st_mtime_ns):
            if file_crc(data) != meta.get("crc32"):
                return "corrupt (checksum mismatch)"
            self._checked[part.stem] = (st.st_size, st.st_mtime_ns)
        return None

    def sweep_stale(self) -> None:
        """Remove temp files left by killed passes (live writers touch theirs every batch)."""
        now = time.time()
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
            except OSError:
                pass

    def bytes_on_disk(self) -> int:
        return sum((self.folder / f"{s}.bin").stat().st_size for s in self.shards)


class ShardWriter:
    """Streams clips into shards of about ``shard_bytes``; each full shard is committed at once.

    Memory: one clip at a time passes through (what the caller hands in); nothing accumulates.
    """

    def __init__(self, folder: Path, dtype: str, width: int, shard_bytes: int, tag: str = "r0") -> None:
        self.folder, self.dtype, self.width = Path(folder), dtype, width
        self.shard_bytes, self.tag = max(1, int(shard_bytes)), tag
        self.folder.mkdir(parents=True, exist_ok=True)
        self.committed = 0  # shards written by this writer
        self.bytes_written = 0
        self._file = None

    def _open(self) -> None:
        self.name = f"{self.tag}-{uuid.uuid4().hex[:12]}"
        self.tmp = self.folder / f".{self.name}.bin.tmp"
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - kept open across many add() calls
        self.crc, self.size, self.rows = 0, 0, 0
        self.clips: list[list] = []
        self.bad: list[str] = []

    def add(self, clip_id: str, feats: torch.Tensor | None, frames: int = 0) -> None:
        """``feats``: (rows, width) in the storage dtype, or None for a clip that failed to decode."""
        if self._file is None:
            self._open()
        if feats is None:
            self.bad.append(clip_id)
            return
        data = feats.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        self._file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.clips.append([clip_id, self.rows, int(feats.shape[0]), int(frames)])
        self.rows += int(feats.shape[0])
        self.size += len(data)
        if self.size >= self.shard_bytes:
            self.commit()

    def commit(self) -> None:
        """Finish the open shard: data file fsync'ed and renamed, then its index part written."""
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if not self.clips and not self.bad:
            self.tmp.unlink(missing_ok=True)
            return
        os.replace(self.tmp, self.folder / f"{self.name}.bin")
        meta = {"bytes": self.size, "crc32": self.crc, "dtype": self.dtype, "width": self.width}
        write_json(self.folder / f"{self.name}.json", {**meta, "clips": self.clips, "bad": self.bad})
        self.committed += 1
        self.bytes_written += self.size

    def abandon(self) -> None:
        """Drop the open shard (an exception in the pass): nothing half-written is left behind."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.tmp.unlink(missing_ok=True)
