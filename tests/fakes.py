"""Small generated stand-ins for real corpus layouts (no download): FSDD, a class folder, Speech Commands.

Class identity lives in a tone's frequency, so tiny models can learn it; files are short and few.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import tone, write_wav

FSDD_SPEAKERS = ("george", "jackson", "nicolas", "yweweler")


def fake_fsdd(root: Path, per_digit: int = 2, digits: int = 10) -> Path:
    """``root/recordings/{digit}_{speaker}_{index}.wav`` at 8 kHz, like the real FSDD."""
    for d in range(digits):
        for s, spk in enumerate(FSDD_SPEAKERS):
            for i in range(per_digit):
                dur = 0.25 + 0.05 * ((d + i) % 3)
                write_wav(
                    root / "recordings" / f"{d}_{spk}_{i}.wav",
                    tone(dur, 8000, 200 + 150 * d, s * 100 + i),
                    8000,
                )
    return root


def fake_folder(
    root: Path, classes=("bird", "cat", "dog"), speakers=("ann", "bob", "cy", "dee", "eve"), per=2
):
    """``root/<class>/<speaker>_<k>.wav`` (16 kHz): 30 files, 5 speakers."""
    for c, label in enumerate(classes):
        for s, spk in enumerate(speakers):
            for k in range(per):
                write_wav(root / label / f"{spk}_{k}.wav", tone(0.3, 16000, 300 * (c + 1), 10 * s + k), 16000)
    return root


SC_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "tree")


def fake_speech_commands(root: Path, per_word: int = 5, noise_seconds: float = 10.0) -> Path:
    """``root/<word>/<spk>_nohash_<n>.wav`` for 12 words (10 SUPERB keywords + 2 others), official-style
    lists (clip 0 of each word in validation, clip 1 in testing) and two ``_background_noise_`` files."""
    val, test = [], []
    for w, word in enumerate(SC_WORDS):
        for n in range(per_word):
            rel = f"{word}/spk{n:02d}abc_nohash_0.wav"
            write_wav(root / rel, tone(0.5 + 0.1 * (n % 3), 16000, 200 + 120 * w, n), 16000)
            (val if n == 0 else test if n == 1 else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    rng = np.random.default_rng(0)
    for name in ("white_noise", "running_tap"):
        noise = (0.1 * rng.standard_normal(int(noise_seconds * 16000))).astype(np.float32)
        write_wav(root / "_background_noise_" / f"{name}.wav", noise, 16000)
    (root / "_background_noise_" / "README.md").write_text("not audio\n")
    return root


def fake_librispeech(root: Path) -> None:
    """A LibriSpeech-shaped tree (two subsets) and a Libri-Light limited one, with short FLAC clips."""

    def chapter(folder: Path, spk: int, ch: int, texts: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for u, text in enumerate(texts):
            uid = f"{spk}-{ch}-{u:04d}"
            sf.write(str(folder / f"{uid}.flac"), tone(0.1 + 0.05 * u, 16000, 440), 16000, format="FLAC")
            lines.append(f"{uid} {text}\n")
        (folder / f"{spk}-{ch}.trans.txt").write_text("".join(lines))

    chapter(root / "LibriSpeech/dev-clean/84/121123", 84, 121123, ["GO DO YOU HEAR", "BUT IN LESS THAN"])
    chapter(root / "LibriSpeech/test-clean/61/70968", 61, 70968, ["HE BEGAN A CONFUSED COMPLAINT"])
    ft = root / "librispeech_finetuning"
    chapter(ft / "1h/0/clean/103/1240", 103, 1240, ["CHAPTER ONE MISSUS RACHEL"])
    chapter(ft / "1h/1/other/1089/134686", 1089, 134686, ["HE HOPED THERE WOULD BE STEW"])
    chapter(ft / "9h/clean/1034/121119", 1034, 121119, ["THE TWO TRAVELLERS"])
