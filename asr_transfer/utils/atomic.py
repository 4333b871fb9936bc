"""Atomic writes: a reader (another process, a DDP rank, a resumed run) sees the old file or the new
one, never half of one. Every file the package writes for others to read goes through here."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same folder, so the rename never becomes a copy across
    filesystems); once the block succeeds it is renamed onto ``path``, on failure it is removed.

    The temporary file is ``.<name>.<random><suffix>`` (hidden, and findable by its ``.tmp`` suffix);
    writers that pick a format from the suffix (soundfile) pass the real one. ``fsync``: the bytes and the rename reach the disk
    before returning (checkpoints, which must survive ``kill -9`` and a power cut).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 would make results private: the mode open() gives
    try:
        yield Path(tmp)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
        if fsync:
            _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", fsync: bool = False, **kwargs) -> Iterator:
    """``open(path, mode)`` that writes to a temporary file and renames it into place on success."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files: mode {mode!r} has no 'w'")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data, indent: int = 2, sort_keys: bool = True) -> Path:
    with atomic_open(path) as f:
        json.dump(data, f, indent=indent, sort_keys=sort_keys)
    return Path(path)


def write_csv(path: str | Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    """A table with a header row (``fields``: the first row's keys when not given)."""
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it to read it, which a thread
    creating a file at that moment would see); Linux shows it in /proc, elsewhere the set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_between(path: str | Path, start: str, end: str, text: str) -> bool:
    """Rewrite the block between the ``start`` and ``end`` marker lines of a text file (a README table a
    script generates); False, and nothing written, when the markers are absent."""
    import re

    old = Path(path).read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(old):
        return False
    write_text(path, pattern.sub(lambda _: f"{start}\n{text}\n{end}", old))
    return True
