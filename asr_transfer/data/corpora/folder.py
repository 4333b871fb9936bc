"""A folder of audio with one sub-folder per class (``root/<label>/**/*.wav``).

Splits, in order of precedence:
  1. existing ``root/train/<label>/``, ``root/val/<label>/``, ``root/test/<label>/`` folders are kept as is;
  2. ``speaker_regex`` (a regex whose first group, or named group ``speaker``, is read from each file
     name): whole speakers go to val/test by ``val_fraction``/``test_fraction``, so no speaker crosses splits;
  3. otherwise files are split per class by ``val_fraction``/``test_fraction`` (stratified).
Every random choice uses ``seed``: the same folder and settings give the same manifests.
"""

from __future__ import annotations

import functools
import logging
import random
import re
from pathlib import Path

from asr_transfer.data.audio import audio_files
from asr_transfer.data.corpora.base import Corpus
from asr_transfer.utils.errors import ConfigError, MissingPathError
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)
# Said on every run that splits a folder by clip: the scores it reports may count a speaker twice.
SPLIT_BY_CLIP = (
    "data=folder splits %s by clip (no data.corpus.speaker_regex): clips of one speaker may land in train, "
    "val and test, which flatters the test score; to keep each speaker in one split: "
    "\"data.corpus.speaker_regex='^([a-z]+)_'\" (its first group is the speaker, read from each file name)"
)
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}


@functools.cache  # once per folder and process: check_data.py builds the corpus twice
def warn_split_by_clip(root: str) -> None:
    log.warning(SPLIT_BY_CLIP, root)


def scan_classes(folder: Path) -> list[dict]:
    """``{audio_filepath, label}`` for every audio file under ``folder/<label>/`` (any depth), sorted."""
    rows = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in audio_files(class_dir):
            rows.append({"audio_filepath": str(f.resolve()), "label": class_dir.name})
    return rows


def existing_splits(root: Path) -> dict[str, Path]:
    """``{split: folder}`` for the split folders present under ``root`` (empty when it has none)."""
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``n`` items go to val and test: rounded, but at least one when the fraction is > 0
    and the group is large enough to keep one for training."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    return n_val, n_test


def split_groups(keys: list[str], val_fraction: float, test_fraction: float, rng: random.Random) -> dict:
    """Assign each key (a speaker, or a file) to a split: ``{key: split}``."""
    keys = sorted(keys)
    rng.shuffle(keys)
    n_val, n_test = split_counts(len(keys), val_fraction, test_fraction)
    out = {k: "test" for k in keys[:n_test]}
    out.update({k: "val" for k in keys[n_test : n_test + n_val]})
    out.update({k: "train" for k in keys[n_test + n_val :]})
    return out


class Folder(Corpus):
    """``root/<label>/...`` (or ``root/{train,val,test}/<label>/...``) -> manifests."""

    name = "folder"

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        speaker_regex: str | None = None,
        split_seed: int = 0,
        **common,
    ) -> None:
        super().__init__(**common)
        if not root:
            raise ConfigError(
                "data.corpus.root is not set",
                "key data.corpus.root of conf/data/folder.yaml",
                "data.corpus.root=/path/to/clips (a folder with one sub-folder per class)",
            )
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise MissingPathError(
                "not a directory",
                f"data.corpus.root={root}",
                "point data.corpus.root at a folder with one sub-folder per class (root/<label>/*.wav)",
            )
        for key, value in (
            ("data.corpus.val_fraction", val_fraction),
            ("data.corpus.test_fraction", test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key}={value}: use a fraction in [0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"data.corpus.val_fraction + data.corpus.test_fraction = {val_fraction + test_fraction} leaves nothing to train on"
            )
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, split_seed
        self.speaker_regex = re.compile(speaker_regex) if speaker_regex else None
        if self.speaker_regex is None and not existing_splits(self.root):
            warn_split_by_clip(str(self.root.resolve()))

    def settings(self) -> dict:
        files = [str(p) for p in audio_files(self.root)]
        return {
            "root": str(self.root.resolve()),
            "n": len(files),
            "files": stable_hash(sorted(files), 12),
            "val": self.val_fraction,
            "test": self.test_fraction,
            "speaker_regex": self.speaker_regex.pattern if self.speaker_regex else None,
            "seed": self.seed,
        }

    def speaker(self, path: str) -> str:
        name = Path(path).name
        m = self.speaker_regex.search(name)
        if m is None:
            raise ValueError(
                f"data.corpus.speaker_regex={self.speaker_regex.pattern!r} does not match {path}; "
                "fix the regex (its first group, or the group named 'speaker', is the speaker)"
            )
        groups = m.groupdict()
        return groups.get("speaker") or (m.group(1) if m.groups() else m.group(0))

    def build(self) -> dict[str, list[dict]]:
        present = existing_splits(self.root)
        if present:
            if "train" not in present:
                raise ValueError(f"{self.root} has {sorted(present)} folders but no train/: add it")
            splits = {s: scan_classes(p) for s, p in present.items()}
            if self.speaker_regex:
                for rows in splits.values():
                    for r in rows:
                        r["speaker"] = self.speaker(r["audio_filepath"])
        else:
            rows = scan_classes(self.root)
            if not rows:
                raise MissingPathError(
                    "no audio in sub-folders",
                    f"data.corpus.root={self.root}",
                    "put each class's files in root/<label>/ (any depth below it)",
                )
            splits = self.split(rows)
        if not splits.get("train"):
            raise ValueError(f"{self.root}: the training split is empty")
        return splits

    def split(self, rows: list[dict]) -> dict[str, list[dict]]:
        rng = random.Random(self.seed)
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        if self.speaker_regex:
            for r in rows:
                r["speaker"] = self.speaker(r["audio_filepath"])
            where = split_groups(
                list({r["speaker"] for r in rows}), self.val_fraction, self.test_fraction, rng
            )
            for r in rows:
                out[where[r["speaker"]]].append(r)
            return out
        by_label: dict[str, list[dict]] = {}
        for r in rows:
            by_label.setdefault(r["label"], []).append(r)
        for label in sorted(by_label):
            group = by_label[label]
            where = split_groups(
                [r["audio_filepath"] for r in group], self.val_fraction, self.test_fraction, rng
            )
            for r in group:
                out[where[r["audio_filepath"]]].append(r)
        return out
