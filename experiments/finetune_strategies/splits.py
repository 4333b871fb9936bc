"""The study's manifests: training subsets per budget and seed, the fixed val subset, the five test sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import soundfile as sf

from experiments.fsdd import SR, clips_of, prepare

TRAIN, VAL, TEST = ["george", "jackson"], "nicolas", "yweweler"
TESTS = ["clean", "white_10dB", "white_0dB", "babble_10dB", "babble_0dB"]


def manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows_of(clips: list[Path]) -> list[dict]:
    return [
        {"audio_filepath": str(c), "duration": sf.info(str(c)).frames / SR, "label": c.stem.split("_")[0]}
        for c in clips
    ]


def per_class(clips: list[Path], k: int | None, seed: int) -> list[Path]:
    if k is None:
        return sorted(clips)
    by: dict[str, list[Path]] = {}
    for c in clips:
        by.setdefault(c.stem.split("_")[0], []).append(c)
    rng = random.Random(seed)
    return sorted(x for v in by.values() for x in rng.sample(sorted(v), min(k, len(v))))


def materials(work: Path, test_per_class: int, val_per_class: int) -> tuple[Path, dict[str, Path]]:
    """The fixed val manifest and the five test manifests (subsets of yweweler, same clips in each)."""
    if not (work / "tests").is_dir():
        prepare(work, TRAIN, VAL, TEST, [10, 0])
    val = manifest(work / "val.jsonl", rows_of(per_class(clips_of([VAL]), val_per_class, 0)))
    keep = {c.name for c in per_class(clips_of([TEST]), test_per_class, 0)}
    clean = [c for c in clips_of([TEST]) if c.name in keep]
    tests = {"clean": manifest(work / "test_clean.jsonl", rows_of(clean))}
    for name in TESTS[1:]:
        rows = [json.loads(x) for x in (work / "tests" / f"{name}.jsonl").read_text().splitlines()]
        tests[name] = manifest(
            work / f"test_{name}.jsonl", [r for r in rows if Path(r["audio_filepath"]).name in keep]
        )
    return val, tests
