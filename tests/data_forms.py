"""The tone corpus (``conftest.write_tone_corpus``) in the forms researchers keep data in: a ``DatasetDict``
saved with ``save_to_disk``, parquet shards with embedded audio bytes, an audiofolder with ``metadata.csv``,
a Lhotse CutSet whose cuts are stretches of longer recordings. Every form holds the same clips, labels,
speakers and order as the JSONL manifests, so a run on either must give the same numbers."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
LABELS = ["high", "low", "mid"]  # sorted: the manifests' default order, so a ClassLabel does not reorder


def manifest_rows(corpus: dict[str, Path]) -> dict[str, list[dict]]:
    """{split: [{path (absolute), label, speaker}]} of the JSONL manifests, in their order."""
    out = {}
    for split, m in corpus.items():
        rows = [json.loads(x) for x in m.read_text().splitlines() if x.strip()]
        out[split] = [
            {"path": (m.parent / r["audio_filepath"]).resolve(), "label": r["label"], "speaker": r["speaker"]}
            for r in rows
        ]
    return out


def dataset_dict(corpus: dict[str, Path], names: list[str] = LABELS):
    """A ``DatasetDict`` (train/validation/test) with an ``Audio`` column of embedded bytes, a ``ClassLabel``."""
    from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value

    # the audio column is built as its Arrow struct and cast to Audio: Audio's encoder imports
    # torchcodec (FFmpeg) even for bytes it does not touch
    raw = {"bytes": Value("binary"), "path": Value("string")}
    features = Features({"audio": raw, "label": ClassLabel(names=names), "speaker": Value("string")})
    out = {}
    for split, rows in manifest_rows(corpus).items():
        columns = {
            "audio": [{"bytes": r["path"].read_bytes(), "path": r["path"].name} for r in rows],
            "label": [names.index(r["label"]) for r in rows],
            "speaker": [r["speaker"] for r in rows],
        }
        ds = Dataset.from_dict(columns, features=features)
        out[HF_SPLITS[split]] = ds.cast_column("audio", Audio())
    return DatasetDict(out)


def save_to_disk(corpus: dict[str, Path], folder: Path) -> Path:
    dataset_dict(corpus).save_to_disk(str(folder))
    return folder


def parquet_shards(corpus: dict[str, Path], folder: Path, shards: int = 2) -> Path:
    """``folder/data/<split>-0000k-of-0000n.parquet``: the hub's layout (bytes embedded, features in the
    schema metadata)."""
    for split, ds in dataset_dict(corpus).items():
        for k in range(shards):
            part = ds.shard(shards, k, contiguous=True)
            part.to_parquet(str(folder / "data" / f"{split}-{k:05d}-of-{shards:05d}.parquet"))
    return folder


def audiofolder(corpus: dict[str, Path], folder: Path) -> Path:
    """``folder/<split>/`` with the audio files and a ``metadata.csv`` (file_name, label, speaker)."""
    for split, rows in manifest_rows(corpus).items():
        d = folder / HF_SPLITS[split]
        d.mkdir(parents=True)
        with open(d / "metadata.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "label", "speaker"])
            for r in rows:
                shutil.copy(r["path"], d / r["path"].name)
                w.writerow([r["path"].name, r["label"], r["speaker"]])
    return folder


def lhotse_cutsets(corpus: dict[str, Path], folder: Path, pad: float = 0.25) -> dict[str, Path]:
    """One recording per clip with ``pad`` seconds of other audio before and after it; each cut is the
    clip's stretch (offset ``pad``). Returns {split: cuts_<split>.jsonl.gz}."""
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    out = {}
    rng = np.random.default_rng(0)
    for split, rows in manifest_rows(corpus).items():
        cuts = []
        for i, r in enumerate(rows):
            clip, sr = sf.read(str(r["path"]), dtype="int16")
            n = int(pad * sr)
            noise = (rng.standard_normal(n) * 3000).astype(np.int16)
            long = folder / "recordings" / f"{split}_{i}.wav"
            long.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(long), np.concatenate([noise, clip, noise[::-1]]), sr, subtype="PCM_16")
            rec = Recording.from_file(long, recording_id=f"{split}_{i}")
            dur = len(clip) / sr
            sup = SupervisionSegment(
                id=f"{split}_{i}", recording_id=rec.id, start=0.0, duration=dur, text=r["label"],
                speaker=r["speaker"], custom={"label": r["label"]},
            )  # fmt: skip
            cuts.append(MonoCut(f"{split}_{i}", pad, dur, 0, recording=rec, supervisions=[sup]))
        out[split] = folder / f"cuts_{split}.jsonl.gz"
        CutSet.from_cuts(cuts).to_file(out[split])
    return out
