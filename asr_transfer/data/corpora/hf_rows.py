"""Rows of a Hugging Face ``Dataset`` in bounded memory, and its embedded audio as files.

Two rules ``corpora/hf.py`` builds on:

* ``record_batches``: a split's rows as Arrow record batches, a few hundred rows at a time. A dataset
  backed by Arrow files (``load_dataset``'s cache, a ``save_to_disk`` folder) is read from those files
  with plain reads, not through its memory map: every page of a map that has been touched stays in
  the process's resident set, so iterating a memory-mapped 20 GB table "in batches" still ends with
  20 GB resident. Other datasets (built in memory, or with an indices mapping) go through
  ``Dataset.iter``.
* ``AudioCache``: audio bytes embedded in the table (parquet from the hub, ``Audio`` columns saved
  with ``save_to_disk``) are written once as files named by their content's SHA-1, so the manifests
  point at ordinary audio files and the datamodule decodes them like any other (soundfile, then
  the backbone's rate). Content keys make the extraction resumable (a file already there is not
  written again), shared between datasets holding the same clip, and immune to row reordering.
  Extracting rather than reading Arrow rows at training time keeps the one manifest seam: nothing
  downstream (features store keys, ``check_data.py``, ``predict.py``) learns a second way to find audio.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from asr_transfer.data.audio import AUDIO_SUFFIXES
from asr_transfer.data.corpora.base import require
from asr_transfer.utils.atomic import atomic_path
from asr_transfer.utils.hashing import file_key, stable_hash

pa = require("pyarrow", "hf", "hf")  # comes with datasets

# the first bytes of the formats libsndfile reads, for bytes that came without a file name
MAGIC = ((b"RIFF", ".wav"), (b"RIFX", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"FORM", ".aiff"))


def record_batches(ds, start: int, stop: int, batch_rows: int = 256) -> Iterator[tuple]:
    """``(index of the batch's first row, batch)`` for rows ``start:stop`` of ``ds`` (a ``datasets.Dataset``)."""
    files = [f["filename"] for f in ds.cache_files]
    if files and ds._indices is None and _rows_in(files) == len(ds):
        yield from _from_files(files, start, stop)
        return
    part = ds.select(range(start, stop)).with_format("arrow")
    for k, table in enumerate(part.iter(batch_size=batch_rows)):
        for batch in table.to_batches():
            yield start + k * batch_rows, batch


def _rows_in(files: list[str]) -> int:
    """Rows in the files, from the batch headers only (a memory map reads no data pages for this,
    and is closed right after), to check that the dataset is exactly its files (no slice, no filter)."""
    n = 0
    for name in files:
        with pa.memory_map(name) as src:
            n += sum(b.num_rows for b in _reader(src))
    return n


def _reader(src):
    """An Arrow file as ``datasets`` writes it (the IPC stream format), batch by batch."""
    return pa.ipc.open_stream(src)


def _from_files(files: list[str], start: int, stop: int) -> Iterator[tuple]:
    row = 0
    for name in files:
        with pa.OSFile(name) as src:
            for batch in _reader(src):
                lo, hi = max(start, row), min(stop, row + batch.num_rows)
                if lo < hi:
                    yield lo, batch.slice(lo - row, hi - lo)
                row += batch.num_rows
                if row >= stop:
                    return


class AudioCache:
    """Embedded audio bytes -> ``<folder>/<sha1[:2]>/<sha1><suffix>``, each written once, atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, data: bytes, name: str | None) -> Path:
        key = hashlib.sha1(data).hexdigest()
        out = self.folder / key[:2] / f"{key}{suffix(data, name)}"
        if not out.is_file():
            with atomic_path(out, suffix=out.suffix) as tmp:
                tmp.write_bytes(data)
        return out


def suffix(data: bytes, name: str | None) -> str:
    """The file name's audio suffix, else one sniffed from the bytes, else ``.bin`` (which the
    audio checks then report as an unsupported format, naming the row)."""
    ext = os.path.splitext(name or "")[1].lower()
    if ext in AUDIO_SUFFIXES:
        return ext
    return next((e for magic, e in MAGIC if data.startswith(magic)), ".bin")


METADATA = ("metadata.csv", "metadata.jsonl")


def open_audiofolder(folder: Path):
    """An audiofolder (audio files + ``metadata.csv``/``metadata.jsonl`` whose ``file_name`` column names
    them, split by folder names as ``datasets`` splits them) as a ``DatasetDict`` whose ``audio`` column
    holds absolute paths; None when ``folder`` has no metadata file.

    Not ``load_dataset("audiofolder")``: its builder passes every path through ``Audio.encode_example``,
    which imports torchcodec (an FFmpeg binding) although nothing is decoded. The metadata is small
    (names and labels, no audio), so it is read whole with pyarrow."""
    import pyarrow.csv
    import pyarrow.json
    from datasets import Dataset, DatasetDict
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        files = DataFilesDict.from_patterns(get_data_patterns(str(folder)), base_path=str(folder))
    except FileNotFoundError:
        return None
    splits = {}
    for split, names in files.items():
        tables, metadata = [], sorted(f for f in names if Path(f).name in METADATA)
        for name in metadata:
            read = pyarrow.csv.read_csv if name.endswith(".csv") else pyarrow.json.read_json
            table = read(name)
            if "file_name" not in table.column_names:
                raise ValueError(f"{name}: no file_name column (columns: {table.column_names})")
            paths = [str((Path(name).parent / f).resolve()) for f in table.column("file_name").to_pylist()]
            table = table.drop_columns(["file_name"]).add_column(0, "audio", pa.array(paths, pa.string()))
            tables.append(table)
        if tables:
            table = pa.concat_tables(tables, promote_options="default")
            # a fingerprint from the metadata files (an in-memory Dataset's is random): the manifests
            # are keyed by it, so an unchanged folder reuses them
            splits[str(split)] = Dataset(table, fingerprint=stable_hash([file_key(m) for m in metadata], 16))
    return DatasetDict(splits) if splits else None
