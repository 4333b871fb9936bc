"""Connected digit strings built from FSDD: an offline corpus of real speech for CTC.

Each utterance joins 2-7 recordings of *one* speaker ("seven three one") with random silent gaps
of 50-300 ms. Splits are by speaker exactly as ``data=fsdd`` (``split_by_speaker``), so the test
speaker's voice is never heard in training. Everything is a function of the settings and
``digits_seed``: the same settings give the same audio and manifests. The joined wavs are
written once into ``audio_dir/fsdd_digits-<settings hash>/`` (a temporary folder renamed into
place, so a half-written corpus is never used).

Every manifest row carries the targets of each task, from what the plan knows (nothing is labelled
by hand): ``text`` (CTC), ``labels`` (the distinct digits: tagging), ``target`` (how many digits:
regression), ``segments`` (each digit's start and end in seconds: frame labelling) and ``speaker``
(verification).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_transfer.data.corpora.fsdd import FSDD
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)
# The default shape of a string, used by plan_digit_strings and FSDDDigits alike: (min, max) digits
# per string and (min, max) milliseconds of silence between two digits.
DIGITS = (2, 7)
GAPS_MS = (50.0, 300.0)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def plan_digit_strings(
    rows: list[dict],
    count: int,
    lengths: tuple[int, int] = DIGITS,
    gaps_ms: tuple[float, float] = GAPS_MS,
    seed: int = 0,
    tag: str = "",
) -> list[dict]:
    """``count`` utterances per speaker in ``rows`` (FSDD scan rows of one split): which recordings,
    in which order, with which gaps (``lengths``: (min, max) digits; ``gaps_ms``: (min, max) silence).
    Pure function of its arguments (no audio is read)."""
    (min_digits, max_digits), (min_gap_ms, max_gap_ms) = lengths, gaps_ms
    if not 1 <= min_digits <= max_digits:
        raise ValueError(
            f"data.corpus.min_digits={min_digits}, data.corpus.max_digits={max_digits}: need 1 <= min <= max"
        )
    if not 0 <= min_gap_ms <= max_gap_ms:
        raise ValueError(
            f"data.corpus.min_gap_ms={min_gap_ms}, data.corpus.max_gap_ms={max_gap_ms}: need 0 <= min <= max"
        )
    by_speaker: dict[str, dict[str, list[str]]] = {}
    for r in sorted(rows, key=lambda r: r["audio_filepath"]):
        by_speaker.setdefault(r["speaker"], {}).setdefault(r["label"], []).append(r["audio_filepath"])
    plans = []
    for speaker in sorted(by_speaker):
        recs = by_speaker[speaker]
        digits = sorted(recs)
        rng = random.Random(f"fsdd_digits:{seed}:{tag}:{speaker}")  # str seeds are stable across runs
        for k in range(count):
            chosen = [rng.choice(digits) for _ in range(rng.randint(min_digits, max_digits))]
            plans.append(
                {
                    "speaker": speaker,
                    "name": f"{speaker}_{k:05d}",
                    "sources": [rng.choice(recs[d]) for d in chosen],
                    "gaps_ms": [round(rng.uniform(min_gap_ms, max_gap_ms), 1) for _ in chosen[1:]],
                    "digits": "".join(chosen),
                    "text": " ".join(DIGIT_WORDS[int(d)] for d in chosen),
                }
            )
    return plans


def segments(plan: dict) -> list[dict]:
    """Where each digit of a joined utterance lies: ``[{start, end, label}]`` in seconds, from the
    sources' lengths and the gaps exactly as ``render`` joins them (sample-exact)."""
    out, at, rate = [], 0, None
    for k, (src, digit) in enumerate(zip(plan["sources"], plan["digits"])):
        info = sf.info(src)
        rate = rate or info.samplerate
        if k:
            at += int(round(plan["gaps_ms"][k - 1] * rate / 1000))
        out.append({"start": round(at / rate, 6), "end": round((at + info.frames) / rate, 6), "label": digit})
        at += info.frames
    return out


def render(plan: dict, path: Path) -> float:
    """Write one joined utterance (the sources' sample rate, PCM 16) and return its duration in seconds."""
    parts, rate = [], None
    for k, src in enumerate(plan["sources"]):
        audio, sr = sf.read(src, dtype="float32", always_2d=True)
        if rate is not None and sr != rate:
            raise ValueError(f"{src}: {sr} Hz, but the other recordings are {rate} Hz (FSDD is 8 kHz)")
        rate = sr
        if k:
            parts.append(np.zeros(int(round(plan["gaps_ms"][k - 1] * sr / 1000)), dtype=np.float32))
        parts.append(audio.mean(axis=1))
    wav = np.concatenate(parts)
    sf.write(str(path), wav, rate, subtype="PCM_16")
    return len(wav) / rate


class FSDDDigits(FSDD):
    """``count`` strings per speaker: ``train_per_speaker`` for training speakers, ``eval_per_speaker``
    for val/test speakers. The recordings and their speaker split are ``FSDD``'s: ``recordings``
    are its settings (root, val_speakers, test_speakers, download_dir, manifest_dir); its label is
    the digit (the strings are made of digits).

    ``mix_eval_speakers``: val and test each hold half of every val and test speaker's strings (the
    first half val, the second test) instead of one speaker group each: speaker verification needs
    several unseen speakers in each split to make non-target trials; both stay unseen in training."""

    name = "fsdd_digits"

    def __init__(
        self,
        train_per_speaker: int = 400,
        eval_per_speaker: int = 100,
        min_digits: int = DIGITS[0],
        max_digits: int = DIGITS[1],
        min_gap_ms: float = GAPS_MS[0],
        max_gap_ms: float = GAPS_MS[1],
        digits_seed: int = 0,
        audio_dir: str = ".cache/data/fsdd_digits",
        mix_eval_speakers: bool = False,
        **recordings,
    ) -> None:
        super().__init__(label="digit", **recordings)
        self.audio_dir = Path(audio_dir)
        self.counts = {"train": train_per_speaker, "val": eval_per_speaker, "test": eval_per_speaker}
        self.lengths = (min_digits, max_digits)
        self.gaps = (min_gap_ms, max_gap_ms)
        self.digits_seed = digits_seed
        self.mix_eval_speakers = mix_eval_speakers

    def audio_settings(self) -> dict:
        """What changes the audio (its folder is keyed by it)."""
        return {
            **super().settings(),
            "counts": self.counts,
            "lengths": self.lengths,
            "gaps": self.gaps,
            "seed": self.digits_seed,
        }

    def settings(self) -> dict:
        # rows: 2 = with every task's targets; mixed: a different val/test split of the same audio
        return {**self.audio_settings(), "rows": 2, **({"mixed": True} if self.mix_eval_speakers else {})}

    def plans(self) -> dict[str, list[dict]]:
        splits = super().build()  # the FSDD recordings, split by speaker
        return {
            split: plan_digit_strings(
                split_rows, self.counts[split], self.lengths, self.gaps, self.digits_seed, split
            )
            for split, split_rows in splits.items()
            if split_rows and self.counts[split] > 0
        }

    def build(self) -> dict[str, list[dict]]:
        out = self.audio_dir / f"{self.name}-{stable_hash(self.audio_settings())}"
        plans = self.plans()
        if not out.is_dir():
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            for split, split_plans in plans.items():
                (tmp / split).mkdir(parents=True, exist_ok=True)
                for p in split_plans:
                    render(p, tmp / split / f"{p['name']}.wav")
            try:
                os.replace(tmp, out)  # the folder appears complete or not at all
            except OSError:  # another process finished the same corpus first: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
                if not out.is_dir():
                    raise
            log.info("fsdd_digits: wrote %d utterances to %s", sum(map(len, plans.values())), out)
        manifests = {}
        for split, split_plans in plans.items():
            rows = []
            for p in split_plans:
                wav = out / split / f"{p['name']}.wav"
                info = sf.info(str(wav))
                rows.append(
                    {
                        "audio_filepath": str(wav),
                        "duration": info.frames / info.samplerate,
                        "text": p["text"],
                        "speaker": p["speaker"],
                        "digits": p["digits"],
                        "labels": sorted(set(p["digits"])),
                        "target": len(p["digits"]),
                        "segments": segments(p),
                    }
                )
            manifests[split] = rows
        return mix_eval_splits(manifests) if self.mix_eval_speakers else manifests


def mix_eval_splits(manifests: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Val and test rows pooled, then each speaker's strings split in half: first half val, second test."""
    pooled = manifests.get("val", []) + manifests.get("test", [])
    by_speaker: dict[str, list[dict]] = {}
    for r in pooled:
        by_speaker.setdefault(r["speaker"], []).append(r)
    val, test = [], []
    for rows in by_speaker.values():
        half = (len(rows) + 1) // 2
        val += rows[:half]
        test += rows[half:]
    return {**manifests, "val": val, "test": test}
