"""Manifests: the one seam between any corpus and the datamodule.

A manifest is JSONL (one object per line) or CSV (header row) with the fields
``audio_filepath`` (required), ``duration`` (seconds; read from the header when absent),
``label`` (classification) or ``text`` (recognition), and optionally ``speaker`` and ``offset``.
Relative audio paths resolve against the manifest's folder. Corpus modules only write manifests.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    def __init__(
        self, path: str | Path, line: int | None, message: str, field_name: str | None = None
    ) -> None:
        where = (
            f"{path}"
            + (f", line {line}" if line is not None else "")
            + (f", field '{field_name}'" if field_name else "")
        )
        self.path, self.line, self.field = str(path), line, field_name
        super().__init__(f"{where}: {message}")


@dataclass
class Entry:
    audio_filepath: str
    duration: float | None = None
    label: str | None = None
    text: str | None = None
    speaker: str | None = None
    offset: float = 0.0
    line: int = 0
    manifest: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"audio_filepath": self.audio_filepath, "duration": self.duration}
        for k in ("label", "text", "speaker"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.offset:
            d["offset"] = self.offset
        d.update(self.extra)
        return d


def read_manifest(path: str | Path, required: tuple[str, ...] = ("audio_filepath",)) -> list[Entry]:
    """Read a JSONL or CSV manifest; every fault names the manifest, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, None, "manifest file not found (check the data.*_manifest setting)")
    base = path.resolve().parent
    rows = _read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else _read_jsonl(path)
    entries, seen = [], {}
    for line, row in rows:
        for key in required:
            if row.get(key) in (None, ""):
                raise ManifestError(path, line, f"missing required field (have: {sorted(row)})", key)
        audio = str(row["audio_filepath"])
        resolved = audio if os.path.isabs(audio) else str(base / audio)
        duration = _float(row.get("duration"), path, line, "duration")
        offset = _float(row.get("offset"), path, line, "offset") or 0.0
        label = row.get("label")
        extra = {
            k: v
            for k, v in row.items()
            if k not in ("audio_filepath", "duration", "label", "text", "speaker", "offset")
        }
        entry = Entry(
            audio_filepath=resolved,
            duration=duration,
            label=None if label is None else str(label),
            text=None if row.get("text") is None else str(row["text"]),
            speaker=None if row.get("speaker") is None else str(row["speaker"]),
            offset=offset,
            line=line,
            manifest=str(path),
            extra=extra,
        )
        key = (resolved, offset)
        if key in seen:
            log.warning("%s, line %d: duplicate of line %d (%s); both are kept", path, line, seen[key], audio)
        else:
            seen[key] = line
        entries.append(entry)
    return entries


def _float(value, path, line, name) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ManifestError(path, line, f"not a number: {value!r}", name) from None


def _read_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for i, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ManifestError(path, i, f"not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise ManifestError(path, i, f"expected a JSON object, got {type(row).__name__}")
            yield i, row


def _read_csv(path: Path):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ManifestError(
                path, 1, "empty CSV: the first line must be a header (audio_filepath,duration,label,...)"
            )
        header = [h.strip() for h in header]
        for i, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ManifestError(
                    path, i, f"has {len(cells)} columns, the header has {len(header)} ({','.join(header)})"
                )
            yield i, dict(zip(header, cells))


def write_manifest(
    path: str | Path, entries: list[Entry] | list[dict], relative_to: str | Path | None = None
) -> Path:
    """Write JSONL atomically (temp file + rename): a crash never leaves a half-written manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for e in entries:
            d = e.to_dict() if isinstance(e, Entry) else dict(e)
            if relative_to is not None:
                d["audio_filepath"] = os.path.relpath(d["audio_filepath"], relative_to)
            f.write(json.dumps(d) + "\n")
    os.replace(tmp, path)
    return path
