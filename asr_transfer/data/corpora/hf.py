"""A Hugging Face dataset as manifests: a hub id, a ``save_to_disk`` folder, parquet files, an audiofolder.

``path`` decides how it is opened (``datasets`` does the reading):
  * a folder written by ``save_to_disk`` (``dataset_dict.json`` / ``state.json``): ``load_from_disk``;
  * any other folder: ``load_dataset(folder)``, which infers the builder from its files: parquet shards
    (split from the file names: ``train-00000-of-00002.parquet``, ``data/test-*.parquet``) or an
    audiofolder (audio files with a ``metadata.csv`` / ``metadata.jsonl``, or class sub-folders);
  * a ``.parquet`` file or a glob of them: one ``train`` split;
  * otherwise a hub id (``name``: its config, ``revision``), read from the hub cache when
    ``HF_HUB_OFFLINE=1``. A local path never touches the network.

``splits`` maps our split to a split spec of the dataset, slicing included (``train[:10%]``,
``train[10:20]+validation``; ``datasets.ReadInstruction``'s grammar and rounding). A ``val`` that is
null or absent from the dataset is carved from train: ``val_fraction`` of the speakers when
``speaker_column`` is set (no speaker in both), else of each label's rows, chosen with ``split_seed``.

Audio is never decoded by ``datasets`` (no FFmpeg, no torchcodec): the column's raw bytes or paths are
read from the Arrow table; bytes are written once into a content-keyed cache (``hf_rows.py`` says why)
and every clip is then decoded like any other manifest's. A ``ClassLabel`` label column gives the
label order (its ``names``). Manifest rows carry ``origin`` (split, row, column) so every later
error about a clip names the dataset row it came from.
"""

from __future__ import annotations

import logging
import random
from glob import glob
from pathlib import Path

from asr_transfer.data.corpora.base import Corpus, require
from asr_transfer.data.corpora.folder import split_groups
from asr_transfer.data.corpora.hf_rows import AudioCache, open_audiofolder, record_batches

log = logging.getLogger(__name__)
SPLITS = {"train": "train", "val": "validation", "test": "test"}


class HFDataset(Corpus):
    """``data=hf``: see the module docstring; every argument is a ``data.corpus.*`` key."""

    name = "hf"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        revision: str | None = None,
        splits: dict | None = None,
        audio_column: str = "audio",
        label_column: str | None = "label",
        text_column: str | None = None,
        speaker_column: str | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        cache_dir: str = ".cache/hf/datasets",
        audio_dir: str = ".cache/data/hf_audio",
        batch_rows: int = 256,
        **common,
    ) -> None:
        super().__init__(**common)
        if not path:
            raise ValueError(
                "data.corpus.path is not set: give a hub id, a save_to_disk folder or parquet files"
            )
        if not (label_column or text_column):
            raise ValueError("data.corpus.label_column and data.corpus.text_column are both null: set one")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.corpus.val_fraction={val_fraction}: use a fraction in (0, 1)")
        self.path, self.config_name, self.revision = path, name, revision
        self.splits = dict(SPLITS if splits is None else splits)
        unknown = set(self.splits) - set(SPLITS)
        if unknown or not self.splits.get("train"):
            raise ValueError(
                f"data.corpus.splits={self.splits}: keys are train (required), val, test; values are the "
                "dataset's split specs, e.g. {train: train, val: validation, test: 'test[:50%]'}"
            )
        self.columns = {"audio": audio_column, "label": label_column, "text": text_column}
        self.columns["speaker"] = speaker_column
        self.val_fraction, self.seed, self.batch_rows = val_fraction, split_seed, batch_rows
        self.cache_dir, self.audio = cache_dir, AudioCache(audio_dir)
        self._data = None

    # ----- opening -------------------------------------------------------------------------------------
    @property
    def data(self):
        """The ``DatasetDict`` (memory-mapped Arrow, nothing decoded), opened once."""
        if self._data is None:
            self._data = self.open()
        return self._data

    def open(self):
        datasets = require("datasets", "hf", "hf")

        p = Path(self.path).expanduser()
        local = p.exists() or any(c in self.path for c in "*?[") or self.path.startswith((".", "/", "~"))
        try:
            if p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file()):
                data = datasets.load_from_disk(str(p))
            elif p.is_dir():
                data = open_audiofolder(p) or datasets.load_dataset(
                    str(p), self.config_name, cache_dir=self.cache_dir
                )
            elif local:
                files = sorted(glob(str(p))) if not p.is_file() else [str(p)]
                if not files:
                    raise FileNotFoundError(
                        f"data.corpus.path={self.path!r}: no such file, folder or glob match"
                    )
                data = datasets.load_dataset("parquet", data_files={"train": files}, cache_dir=self.cache_dir)
            else:
                data = datasets.load_dataset(
                    self.path, self.config_name, revision=self.revision, cache_dir=self.cache_dir
                )
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as e:
            if local:
                raise
            raise type(e)(
                f"data.corpus.path={self.path!r} could not be loaded from the hub ({str(e).splitlines()[0]}); "
                "with HF_HUB_OFFLINE=1 it must be in the hub cache already: or give a local "
                "save_to_disk folder or parquet files"
            ) from e
        return data if isinstance(data, datasets.DatasetDict) else datasets.DatasetDict({"train": data})

    def ranges(self, spec: str) -> list[tuple[str, int, int]]:
        """``(split, start, stop)`` row ranges of a split spec such as ``train[:10%]+validation``."""
        from datasets import ReadInstruction

        sizes = {name: len(ds) for name, ds in self.data.items()}
        try:
            absolute = ReadInstruction.from_spec(str(spec)).to_absolute(sizes)
        except (ValueError, AssertionError) as e:
            raise ValueError(
                f"data.corpus.splits: {spec!r} is not a split of {self.path} (its splits: {sorted(sizes)}) "
                f"or not a valid slice such as 'train[:10%]' ({e})"
            ) from None
        return [(a.splitname, a.from_, a.to) for a in absolute]

    def has(self, spec: str | None) -> bool:
        return bool(spec) and str(spec).split("[", 1)[0].split("+", 1)[0] in self.data

    # ----- the Corpus interface ------------------------------------------------------------------------
    def settings(self) -> dict:
        fingerprints = {n: getattr(ds, "_fingerprint", None) for n, ds in self.data.items()}
        return {
            "path": str(Path(self.path).expanduser().resolve())
            if Path(self.path).expanduser().exists()
            else self.path,
            "name": self.config_name,
            "revision": self.revision,
            "data": fingerprints,
            "splits": self.splits,
            "columns": self.columns,
            "val": [self.val_fraction, self.seed],
        }

    def labels(self) -> list[str] | None:
        """A ``ClassLabel`` label column's names, in its order; None for plain values (sorted later)."""
        from datasets import ClassLabel

        col = self.columns["label"]
        feature = self.data[self.ranges(self.splits["train"])[0][0]].features.get(col) if col else None
        return list(feature.names) if isinstance(feature, ClassLabel) else None

    def origin(self, entry, field: str) -> str | None:
        """``<path> <split> row <i> column '<name>'`` for a manifest entry this corpus wrote."""
        row = entry.extra.get("origin")
        column = self.columns.get("audio" if field == "audio_filepath" else field)
        if not row or not column:
            return None
        return f"{self.path} {row} column {column!r}"

    def build(self) -> dict[str, list[dict]]:
        out = {}
        for split in ("train", "val", "test"):
            spec = self.splits.get(split)
            if split == "val" and not self.has(spec):
                continue
            if spec:
                out[split] = [row for r in self.ranges(spec) for row in self.rows(spec, *r)]
        if "val" not in out:
            log.info("%s has no %r split: carving val from train", self.path, self.splits.get("val"))
            out["train"], out["val"] = self.carve(out["train"])
        return out

    def rows(self, spec: str, split: str, start: int, stop: int) -> list[dict]:
        """Manifest rows for rows ``start:stop`` of ``split``; audio bytes land in the cache."""
        ds = self.data[split]
        cols = self.columns
        missing = [f"{k}_column={c!r}" for k, c in cols.items() if c and c not in ds.column_names]
        if missing:
            raise ValueError(
                f"{self.path} split {split!r}: data.corpus.{', data.corpus.'.join(missing)} not among its "
                f"columns {ds.column_names}: set the data.corpus.*_column keys to the dataset's names"
            )
        names = getattr(ds.features.get(cols["label"]), "names", None) if cols["label"] else None
        rows, bad = [], []
        for first, batch in record_batches(
            ds.select_columns([c for c in cols.values() if c]), start, stop, self.batch_rows
        ):
            values = {k: batch.column(c).to_pylist() for k, c in cols.items() if c}
            for k in range(batch.num_rows):
                i = first + k
                origin = f"{split} row {i}"
                row = {"audio_filepath": self.audio_file(values["audio"][k], origin), "origin": origin}
                label = values.get("label", [None] * batch.num_rows)[k]
                if names is not None and label is not None:
                    if not 0 <= label < len(names):
                        bad.append(f"row {i}: {label}")
                        continue
                    label = names[label]
                for key in ("label", "text", "speaker"):
                    value = label if key == "label" else values.get(key, [None] * batch.num_rows)[k]
                    if value is not None:
                        row[key] = str(value)
                rows.append(row)
        if bad:
            raise ValueError(
                f"{self.path} split {split!r} column {cols['label']!r}: {len(bad)} label(s) outside the "
                f"{len(names)} ClassLabel names (-1 is 'no label'): {', '.join(bad[:10])}"
                + (" ..." if len(bad) > 10 else "")
                + ": fix those rows or leave them out with the split spec"
            )
        return rows

    def audio_file(self, value, origin: str) -> str:
        """A cell of the audio column (``{bytes, path}``, a path string or raw bytes) -> a local file."""
        where = f"{self.path} {origin} column {self.columns['audio']!r}"
        if isinstance(value, dict):
            data, name = value.get("bytes"), value.get("path")
        else:
            data, name = (value, None) if isinstance(value, bytes) else (None, value)
        if data:
            return str(self.audio.path(data, name))
        if isinstance(name, str) and name:
            p = Path(name).expanduser()
            if not p.is_absolute() and Path(self.path).expanduser().is_dir():
                p = Path(self.path).expanduser() / p  # relative to the dataset's folder
            return str(p.resolve())
        raise ValueError(f"{where}: no audio bytes and no path ({value!r:.80}): is this the audio column?")

    def carve(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        """(train, val): whole speakers (``speaker_column``) or, per label, rows go to val."""
        rng = random.Random(self.seed)
        if self.columns["speaker"]:
            where = split_groups(sorted({r["speaker"] for r in rows}), self.val_fraction, 0.0, rng)
            keys = [r["speaker"] for r in rows]
        else:
            where, keys = {}, [str(i) for i in range(len(rows))]
            target = "label" if self.columns["label"] else None
            groups: dict[str, list[str]] = {}
            for key, r in zip(keys, rows):
                groups.setdefault(r.get(target, "") if target else "", []).append(key)
            for g in sorted(groups):
                where.update(split_groups(groups[g], self.val_fraction, 0.0, rng))
        train = [r for r, k in zip(rows, keys) if where[k] == "train"]
        val = [r for r, k in zip(rows, keys) if where[k] == "val"]
        if not val or not train:
            raise ValueError(
                f"data.corpus.val_fraction={self.val_fraction} of {len(rows)} training rows leaves "
                f"{len(train)} to train and {len(val)} to validate: give a val split or change the fraction"
            )
        return train, val
