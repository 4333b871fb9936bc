"""Content keys for caches and prepared corpora: the same settings give the same key on every machine."""

from __future__ import annotations

import hashlib
import json
import os


def stable_hash(obj, length: int = 10) -> str:
    """Hex SHA-1 of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``), cut to ``length``."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def file_key(path: str) -> str:
    """``path|size|mtime_ns`` (``path|-|-`` when it cannot be read): a file's identity in cache keys, so
    an edited or replaced file is a different key."""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}|-|-"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"
