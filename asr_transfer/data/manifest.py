"""Manifests: the one seam between any corpus and the datamodule.

A manifest is JSONL (one object per line) or CSV (header row) with the fields
``audio_filepath`` (required), ``duration`` (seconds; read from the header when absent),
the target field the task reads (``label``, ``text``, or any column: ``data/targets.py``), and
optionally ``speaker`` and ``offset``. ``offset`` and ``duration`` are the stretch of the file a row
is (NeMo's rule; a Lhotse cut): only that stretch is decoded.
Relative audio paths resolve against the manifest's folder. Corpus modules only write manifests.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from asr_transfer.utils.atomic import atomic_open
from asr_transfer.utils.errors import UserError

log = logging.getLogger(__name__)


class ManifestError(UserError, ValueError):
    """A manifest row (or file) a run cannot read: ``<what>, <path>, line N, field 'x'. Fix: ...``."""

    fix = "correct the manifest (python check_data.py with the same overrides lists every fault at once)"

    def __init__(
        self, path: str | Path, line: int | None, message: str, field_name: str | None = None
    ) -> None:
        where = (
            f"{path}"
            + (f", line {line}" if line is not None else "")
            + (f", field '{field_name}'" if field_name else "")
        )
        self.path, self.line, self.field = str(path), line, field_name
        super().__init__(message, where)


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

    def get(self, name: str):
        """A field by name: a declared one (``label``, ``text``, ``duration``...) or an extra manifest column."""
        if name in _FIELDS:
            return getattr(self, name)
        return self.extra.get(name)

    def to_dict(self) -> dict:
        d = {"audio_filepath": self.audio_filepath, "duration": self.duration}
        for k in ("label", "text", "speaker"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.offset:
            d["offset"] = self.offset
        d.update(self.extra)
        return d


def read_manifest(
    path: str | Path,
    required: tuple[str, ...] = ("audio_filepath",),
    on_error: Callable[[ManifestError], None] | None = None,
) -> list[Entry]:
    """Read a JSONL or CSV manifest; every fault names the manifest, the line and the field.

    ``on_error``: None raises the first fault; a callable receives every faulty line's
    ``ManifestError`` and the line is left out (``check_data.py`` reports them all at once).
    Duplicate entries (same file and offset) are kept with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, None, "manifest file not found (check the data.*_manifest setting)")
    base = path.resolve().parent
    reader = _read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else _read_jsonl(path)
    entries, seen = [], {}
    for item in reader:
        try:
            if isinstance(item, ManifestError):
                raise item
            entry = _entry(path, base, *item, required)
        except ManifestError as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        key = (entry.audio_filepath, entry.offset)
        if key in seen:
            log.warning(
                "%s, line %d: duplicate of line %d (%s); both are kept",
                path,
                entry.line,
                seen[key],
                entry.audio_filepath,
            )
        else:
            seen[key] = entry.line
        entries.append(entry)
    return entries


def _entry(path: Path, base: Path, line: int, row: dict, required: tuple[str, ...]) -> Entry:
    for key in required:
        if row.get(key) in (None, ""):
            raise ManifestError(path, line, f"missing required field (have: {sorted(row)})", key)
    audio = row.get("audio_filepath")
    if not isinstance(audio, str):
        raise ManifestError(path, line, f"expected a path string, got {audio!r}", "audio_filepath")
    audio = os.path.expanduser(audio)
    resolved = audio if os.path.isabs(audio) else str(base / audio)  # relative: to the manifest's folder
    duration = _float(row.get("duration"), path, line, "duration")
    if duration is not None and not duration > 0:
        raise ManifestError(path, line, f"must be a positive number of seconds, got {duration}", "duration")
    offset = _float(row.get("offset"), path, line, "offset") or 0.0
    if offset < 0:
        raise ManifestError(path, line, f"must be >= 0 seconds, got {offset}", "offset")
    label = row.get("label")
    extra = {k: v for k, v in row.items() if k not in _FIELDS}
    return Entry(
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


_FIELDS = ("audio_filepath", "duration", "label", "text", "speaker", "offset")


def _float(value, path, line, name) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ManifestError(path, line, f"not a number: {value!r}", name) from None


def _read_jsonl(path: Path):
    """Yields (line, row) or a ManifestError per faulty line (so a caller can collect them all)."""
    with open(path, "rb") as f:
        for i, raw_bytes in enumerate(f, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:
                yield ManifestError(
                    path, i, f"not UTF-8 text (byte {e.start}); re-save the manifest as UTF-8"
                )
                continue
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                yield ManifestError(path, i, f"not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                yield ManifestError(path, i, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield i, row


def _read_csv(path: Path):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(path, None, f"not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ManifestError(
                path, 1, "empty CSV: the first line must be a header (audio_filepath,duration,label,...)"
            )
        header = [h.strip() for h in header]
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield ManifestError(path, reader.line_num, f"not valid CSV ({e})")
                continue
            i = reader.line_num  # the physical line (quoted fields may span lines)
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield ManifestError(
                    path, i, f"has {len(cells)} columns, the header has {len(header)} ({','.join(header)})"
                )
                continue
            yield i, dict(zip(header, cells))


def write_manifest(
    path: str | Path, entries: list[Entry] | list[dict], relative_to: str | Path | None = None
) -> Path:
    """Write JSONL atomically (temp file + rename): a crash never leaves a half-written manifest."""
    with atomic_open(path) as f:
        for e in entries:
            d = e.to_dict() if isinstance(e, Entry) else dict(e)
            if relative_to is not None:
                d["audio_filepath"] = os.path.relpath(d["audio_filepath"], relative_to)
            f.write(json.dumps(d) + "\n")
    return Path(path)
