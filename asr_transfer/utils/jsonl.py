"""JSONL files for run-directory artefacts, written atomically (readers never see half a file)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from asr_transfer.utils.atomic import atomic_open


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    with atomic_open(path) as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
