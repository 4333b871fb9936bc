"""Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav`` at 8 kHz, split by speaker."""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile as sf

from asr_transfer.data.corpora.base import Corpus
from asr_transfer.data.corpora.download import download_and_extract, mirrored
from asr_transfer.utils.errors import MissingPathError

log = logging.getLogger(__name__)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"


def find_recordings(
    root: str | None, download_dir: str, mirror: str | None = None, sha256: str | None = None
) -> Path:
    """``root`` (a folder with the wavs, or with ``recordings/``), else the public archive (GitHub's tag
    tarball, or the same file name under ``mirror``), downloaded once; ``sha256`` checks it (GitHub
    does not promise byte-stable tag archives, so there is no default)."""
    if root:
        p = Path(root).expanduser()
        for cand in (p / "recordings", p):
            if cand.is_dir() and any(cand.glob("*_*_*.wav")):
                return cand.resolve()
        raise MissingPathError(
            "no FSDD recordings ({digit}_{speaker}_{index}.wav, or recordings/ holding them)",
            f"data.corpus.root={root}",
            "point data.corpus.root at FSDD's recordings/ folder, or data.corpus.root=null to download it",
        )
    return download_and_extract(
        mirrored(FSDD_URL, mirror), Path(download_dir), "free-spoken-digit-dataset-1.0.10/recordings", sha256
    )


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


def split_by_utterance(rows: list[dict], val_speakers, test_speakers) -> dict[str, list[dict]]:
    """``label=speaker``: every speaker in every split, by recording index: FSDD's own test split is
    recordings 0-4 of each digit and speaker; 5-9 validate; 10-49 train."""
    if val_speakers or test_speakers:
        raise ValueError(
            "data.corpus.label=speaker classifies the speakers, so none can be held out: "
            "set data.corpus.val_speakers=[] data.corpus.test_speakers=[] (splits go by recording index)"
        )
    out = {"train": [], "val": [], "test": []}
    for r in rows:
        split = "test" if r["utt_index"] < 5 else "val" if r["utt_index"] < 10 else "train"
        out[split].append({**r, "label": r["speaker"]})
    return out


def split_by_speaker(
    rows: list[dict], val_speakers: list[str], test_speakers: list[str]
) -> dict[str, list[dict]]:
    speakers = {r["speaker"] for r in rows}
    for key, chosen in (
        ("data.corpus.val_speakers", val_speakers),
        ("data.corpus.test_speakers", test_speakers),
    ):
        unknown = set(chosen) - speakers
        if unknown:
            raise ValueError(
                f"{key}: unknown speaker(s) {sorted(unknown)}; this corpus has {sorted(speakers)}"
            )
    if set(val_speakers) & set(test_speakers):
        raise ValueError(
            f"data.corpus.val_speakers and data.corpus.test_speakers overlap: {sorted(set(val_speakers) & set(test_speakers))}"
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
    # data.corpus.label -> how the recordings split: digits by speaker (test voices never heard in
    # training), speakers by recording index (every speaker in every split)
    split_rules = {"digit": split_by_speaker, "speaker": split_by_utterance}

    def __init__(
        self,
        root: str | None = None,
        val_speakers: list[str] = (),
        test_speakers: list[str] = (),
        download_dir: str = ".cache/data/fsdd",
        label: str = "digit",
        mirror: str | None = None,
        sha256: str | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        self.mirror, self.sha256 = mirror, sha256
        if label not in self.split_rules:
            raise ValueError(
                f"data.corpus.label={label!r}: use digit (what was said) or speaker (who said it)"
            )
        self.label = label
        self.root, self.download_dir = root, download_dir
        self.val_speakers, self.test_speakers = list(val_speakers or []), list(test_speakers or [])

    def settings(self) -> dict:
        rec = find_recordings(self.root, self.download_dir, self.mirror, self.sha256)
        return {
            "recordings": str(rec),
            "n": len(list(rec.glob("*.wav"))),
            "val": self.val_speakers,
            "test": self.test_speakers,
            **({"label": self.label} if self.label != "digit" else {}),  # digit runs keep their manifests
        }

    def build(self) -> dict[str, list[dict]]:
        rows = scan(find_recordings(self.root, self.download_dir, self.mirror, self.sha256))
        return self.split_rules[self.label](rows, self.val_speakers, self.test_speakers)
