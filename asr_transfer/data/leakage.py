"""Leakage: clips or speakers a checkpoint trained on, found again in what it is tested or run on.

Every checkpoint stores the fingerprint of its training split (``tasks/base.py``): a short hash per clip
and the list of speakers. ``eval.py`` and ``predict.py`` compare their clips with it and warn with counts,
so a score measured on training data is never mistaken for a test score.

A clip is known by the last two parts of its path and its offset (``low/3.wav@0.0``, ``recordings/
0_george_0.wav@0.0``), not the full path: a copy of the corpus in another folder (``data.corpus.root=
/copy/of/fsdd``) holds the same clips.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import PurePath

from asr_transfer.data.manifest import Entry

HASH_CHARS = 12  # 48 bits: among a million training clips a false match has a chance of ~1e-8 per clip


def clip_id(audio_filepath: str, offset: float = 0.0) -> str:
    name = "/".join(PurePath(audio_filepath).parts[-2:])
    return hashlib.sha1(f"{name}@{float(offset)}".encode()).hexdigest()[:HASH_CHARS]


def fingerprint(entries: Iterable[Entry]) -> dict[str, list[str]]:
    """``{"clips": sorted clip ids, "speakers": sorted speakers}`` of a split (plain lists: checkpoints load
    with ``weights_only=True``)."""
    entries = list(entries)
    return {
        "clips": sorted({clip_id(e.audio_filepath, e.offset) for e in entries}),
        "speakers": sorted({str(e.speaker) for e in entries if e.speaker is not None}),
    }


def training_fingerprint(datamodule) -> dict[str, list[str]]:
    """The training split's fingerprint, or ``{}`` when there is none (a probe fitted without a datamodule)."""
    train = (getattr(datamodule, "entries", None) or {}).get("train")
    return fingerprint(train) if train else {}


def overlap(trained: dict, entries: list[Entry], what: str) -> str | None:
    """The warning for ``entries`` (``what``: "test clips", "inputs") that the checkpoint trained on, with
    counts; None when nothing overlaps or the checkpoint has no fingerprint."""
    if not trained or not entries:
        return None
    clips = set(trained.get("clips", []))
    seen = sum(clip_id(e.audio_filepath, e.offset) in clips for e in entries)
    speakers = sorted({str(e.speaker) for e in entries if e.speaker is not None})
    shared = [s for s in speakers if s in set(trained.get("speakers", []))]
    parts = []
    if seen:
        parts.append(f"{seen} of {len(entries)} {what} were in its training split")
    if shared:
        named = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
        parts.append(f"{len(shared)} of {len(speakers)} speakers ({named}) trained on")
    if not parts:
        return None
    return (
        "leakage: the checkpoint has seen this data: "
        + "; ".join(parts)
        + ". Scores on it overstate how the model does on new clips and speakers"
    )
