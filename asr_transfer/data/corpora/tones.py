"""Generated tones: one class per pitch, a few "speakers" (timbres), no download. An offline smoke-test
corpus, and the example of what adding a corpus takes (this module and ``conf/data/tones.yaml``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_transfer.data.corpora.base import Corpus
from asr_transfer.utils.atomic import atomic_path
from asr_transfer.utils.hashing import stable_hash

SPLIT_OF_SPEAKER = ("train", "train", "val", "test")  # speaker k -> split: no speaker crosses splits


class Tones(Corpus):
    """``per_class`` clips per class and speaker, each a sine at the class's pitch (``classes``: name ->
    Hz) with the speaker's harmonics, ``seconds`` long at ``sample_rate``; rows carry ``label`` and
    ``text`` (the class name), so classification and CTC both read it."""

    name = "tones"

    def __init__(
        self,
        classes: dict[str, float],
        per_class: int = 4,
        seconds: float = 0.5,
        sample_rate: int = 16000,
        audio_dir: str = ".cache/data/tones",
        **common,
    ) -> None:
        super().__init__(**common)
        if len(classes) < 2:
            raise ValueError(f"data.corpus.classes={classes}: give at least two classes (name: Hz)")
        self.classes, self.per_class = dict(classes), per_class
        self.seconds, self.sample_rate, self.audio_dir = seconds, sample_rate, audio_dir

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in ("classes", "per_class", "seconds", "sample_rate", "audio_dir")}

    def build(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        t = np.arange(int(self.seconds * self.sample_rate)) / self.sample_rate
        folder = Path(self.audio_dir) / f"{self.name}-{stable_hash(self.settings())}"
        for spk, split in enumerate(SPLIT_OF_SPEAKER):
            for label, hz in self.classes.items():
                for k in range(self.per_class):
                    f = hz * (1 + 0.01 * k)
                    wav = sum(math.pow(0.5, h) * np.sin(2 * np.pi * f * (h + 1) * t) for h in range(spk + 1))
                    path = folder / f"{label}_s{spk}_{k}.wav"
                    with atomic_path(path, suffix=".wav") as tmp:
                        sf.write(tmp, (0.3 * wav).astype(np.float32), self.sample_rate)
                    row = {"audio_filepath": str(path), "duration": self.seconds, "label": label}
                    out[split].append({**row, "text": label, "speaker": f"s{spk}"})
        return out
