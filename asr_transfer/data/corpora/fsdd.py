"""Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav`` at 8 kHz, split by speaker."""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile as sf

from asr_transfer.data.corpora.base import Corpus, download_and_extract
from asr_transfer.data.datamodule import AudioDataModule

log = logging.getLogger(__name__)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"


def find_recordings(root: str | None, download_dir: str) -> Path:
    """``root`` (a folder with the wavs, or with ``recordings/``), else the public archive, downloaded once."""
    if root:
        p = Path(root).expanduser()
        for cand in (p / "recordings", p):
            if cand.is_dir() and any(cand.glob("*_*_*.wav")):
                return cand.resolve()
        raise FileNotFoundError(
            f"data.root={root!r} holds no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav); "
            "set data.root=null to download the corpus"
        )
    return download_and_extract(FSDD_URL, Path(download_dir), "free-spoken-digit-dataset-1.0.10/recordings")


def scan(recordings: Path) -> list[dict]:
    rows = []
    for f in sorted(recordings.glob("*.wav")):
        parts = f.stem.split("_")
        if len(parts) != 3 or not parts[0].isdigit():
            log.warning("skipping %s: not named {digit}_{speaker}_{index}.wav", f)
            continue
        info = sf.info(str(f))
        rows.append(
            {
                "audio_filepath": str(f),
                "duration": info.frames / info.samplerate,
                "label": parts[0],
                "speaker": parts[1],
                "utt_index": int(parts[2]),
            }
        )
    return rows


def split_by_speaker(
    rows: list[dict], val_speakers: list[str], test_speakers: list[str]
) -> dict[str, list[dict]]:
    speakers = {r["speaker"] for r in rows}
    for key, chosen in (("data.val_speakers", val_speakers), ("data.test_speakers", test_speakers)):
        unknown = set(chosen) - speakers
        if unknown:
            raise ValueError(
                f"{key}: unknown speaker(s) {sorted(unknown)}; this corpus has {sorted(speakers)}"
            )
    if set(val_speakers) & set(test_speakers):
        raise ValueError(
            f"data.val_speakers and data.test_speakers overlap: {sorted(set(val_speakers) & set(test_speakers))}"
        )
    out = {"train": [], "val": [], "test": []}
    for r in rows:
        split = (
            "test" if r["speaker"] in test_speakers else "val" if r["speaker"] in val_speakers else "train"
        )
        out[split].append(r)
    if not out["train"]:
        raise ValueError("every speaker is in val or test: leave at least one for training")
    return out


class FSDD(Corpus):
    """Everything not in ``val_speakers``/``test_speakers`` trains (speakers never cross splits)."""

    name = "fsdd"

    def __init__(
        self,
        root: str | None = None,
        val_speakers: list[str] = (),
        test_speakers: list[str] = (),
        download_dir: str = ".cache/data/fsdd",
        manifest_dir: str = ".cache/manifests",
        max_per_class: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        super().__init__(manifest_dir)
        self.root, self.download_dir = root, download_dir
        self.val_speakers, self.test_speakers = list(val_speakers or []), list(test_speakers or [])
        self.max_per_class, self.subset_seed = max_per_class, subset_seed

    def settings(self) -> dict:
        rec = find_recordings(self.root, self.download_dir)
        return {
            "recordings": str(rec),
            "n": len(list(rec.glob("*.wav"))),
            "val": self.val_speakers,
            "test": self.test_speakers,
            "max_per_class": self.max_per_class,
            "seed": self.subset_seed,
        }

    def build(self) -> dict[str, list[dict]]:
        splits = split_by_speaker(
            scan(find_recordings(self.root, self.download_dir)), self.val_speakers, self.test_speakers
        )
        if self.max_per_class:
            splits["train"] = limit_per_class(splits["train"], self.max_per_class, self.subset_seed)
        return splits


def limit_per_class(rows: list[dict], k: int, seed: int) -> list[dict]:
    """Keep ``k`` random training examples per label (the labelled-data-scarcity setting)."""
    import random

    rng = random.Random(seed)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    kept = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        kept += group[:k]
    return kept


class FSDDDataModule(AudioDataModule):
    """``data=fsdd``: the FSDD corpus split by speaker, then the generic manifest datamodule."""

    def __init__(
        self,
        root: str | None = None,
        val_speakers: list[str] = (),
        test_speakers: list[str] = (),
        max_per_class: int | None = None,
        subset_seed: int = 0,
        download_dir: str = ".cache/data/fsdd",
        manifest_dir: str = ".cache/manifests",
        **kwargs,
    ) -> None:
        corpus = FSDD(
            root, val_speakers, test_speakers, download_dir, manifest_dir, max_per_class, subset_seed
        )
        super().__init__(corpus=corpus, **kwargs)
