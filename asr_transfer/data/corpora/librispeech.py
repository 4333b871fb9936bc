"""LibriSpeech (read English audiobooks) and the Libri-Light limited-supervision splits -> text manifests.

Archives (OpenSLR's LibriSpeech subsets, fbaipublicfiles' ``librispeech_finetuning.tgz``, or the same
file names under ``mirror``) are downloaded once by ``download.py``, checked against torchaudio's
checksums and extracted under ``root`` in torchaudio's layout; torchaudio's dataset classes
(``LIBRISPEECH``, ``LibriLightLimited``) then list the utterances and this module writes manifests
(path, duration, text, speaker).

``data=librilight`` is the classic low-resource transfer setting (wav2vec2, HuBERT): fine-tune on
10 min / 1 h / 10 h of labelled speech, validate on dev-clean/dev-other, test on test-clean/test-other.
"""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile as sf

from asr_transfer.data.corpora.base import Corpus
from asr_transfer.data.corpora.download import download_and_extract, mirrored

log = logging.getLogger(__name__)
LIBRILIGHT_SUBSETS = ("10min", "1h", "10h")
OPENSLR = "http://www.openslr.org/resources/12"  # torchaudio's URL (its checksums are keyed by it)


def fetch_librispeech(root: Path, subset: str, mirror: str | None, sha256: dict | None) -> None:
    """``root/LibriSpeech/<subset>``, downloaded once when absent."""
    from torchaudio.datasets.librispeech import _CHECKSUMS

    url = f"{OPENSLR}/{subset}.tar.gz"
    checksum = (sha256 or {}).get(subset) or _CHECKSUMS.get(url)
    download_and_extract(mirrored(url, mirror), root, f"LibriSpeech/{subset}", checksum)


def fetch_librilight(root: Path, mirror: str | None, sha256: dict | None) -> None:
    """``root/librispeech_finetuning`` (every Libri-Light limited split), downloaded once when absent."""
    from torchaudio.datasets import librilight_limited as ll

    checksum = (sha256 or {}).get("librispeech_finetuning") or ll._CHECKSUM
    download_and_extract(mirrored(ll._URL, mirror), root, ll._ARCHIVE_NAME, checksum)


def _row(audio: Path, text: str, speaker: int, chapter: int, subset: str) -> dict:
    info = sf.info(str(audio))  # header only
    return {
        "audio_filepath": str(audio),
        "duration": info.frames / info.samplerate,
        "text": text,
        "speaker": str(speaker),
        "chapter": chapter,
        "subset": subset,
    }


def librispeech_rows(root: str | Path, subset: str) -> list[dict]:
    """Every utterance of one LibriSpeech subset (e.g. ``train-clean-100``, ``dev-clean``)."""
    from torchaudio.datasets import LIBRISPEECH

    try:
        ds = LIBRISPEECH(str(root), url=subset, download=False)
    except RuntimeError as e:  # not found and download=False
        raise FileNotFoundError(
            f"LibriSpeech {subset} not under data.corpus.root={str(root)!r} (expected {root}/LibriSpeech/{subset}/): "
            "set data.corpus.download=true or point data.corpus.root at the folder that holds LibriSpeech/"
        ) from e
    base = Path(root) / "LibriSpeech"
    rows = []
    for n in range(len(ds)):
        rel, _, text, speaker, chapter, _ = ds.get_metadata(n)
        rows.append(_row(base / rel, text, speaker, chapter, subset))
    return rows


def librilight_rows(root: str | Path, subset: str) -> list[dict]:
    """The Libri-Light limited-supervision training set: ``10min``, ``1h`` or ``10h``."""
    from torchaudio.datasets import LibriLightLimited
    from torchaudio.datasets.librispeech import _get_librispeech_metadata

    if subset not in LIBRILIGHT_SUBSETS:
        raise ValueError(f"data.corpus.librilight={subset!r}: use one of {list(LIBRILIGHT_SUBSETS)}")
    try:
        ds = LibriLightLimited(str(root), subset=subset, download=False)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"Libri-Light limited not under data.corpus.root={str(root)!r} (expected {root}/librispeech_finetuning/): "
            "set data.corpus.download=true or point data.corpus.root at the folder that holds librispeech_finetuning/"
        ) from e
    base = Path(ds._path)
    rows = []
    # torchaudio lists (folder, file id) pairs but exposes no metadata accessor for this class
    for folder, fileid in ds._fileids_paths:
        rel, _, text, speaker, chapter, _ = _get_librispeech_metadata(
            fileid, str(base), folder, ds._ext_audio, ds._ext_txt
        )
        rows.append(_row(base / rel, text, speaker, chapter, f"librilight-{subset}"))
    return rows


class LibriSpeech(Corpus):
    """Training rows from ``train_subsets`` (LibriSpeech) or, with ``librilight``, from that Libri-Light
    split; val/test rows from LibriSpeech subsets."""

    name = "librispeech"

    def __init__(
        self,
        root: str,
        train_subsets: list[str] = ("train-clean-100",),
        val_subsets: list[str] = ("dev-clean",),
        test_subsets: list[str] = ("test-clean",),
        librilight: str | None = None,
        download: bool = True,
        mirror: str | None = None,
        sha256: dict | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        self.root = Path(root).expanduser()
        self.subsets = {"train": list(train_subsets), "val": list(val_subsets), "test": list(test_subsets)}
        self.librilight, self.download = librilight, download
        self.mirror, self.sha256 = mirror, dict(sha256 or {})

    def settings(self) -> dict:
        return {"root": str(self.root.resolve()), "subsets": self.subsets, "librilight": self.librilight}

    def build(self) -> dict[str, list[dict]]:
        self.root.mkdir(parents=True, exist_ok=True)
        splits: dict[str, list[dict]] = {}
        for split, subsets in self.subsets.items():
            if split == "train" and self.librilight:
                if self.download:
                    fetch_librilight(self.root, self.mirror, self.sha256)
                splits[split] = librilight_rows(self.root, self.librilight)
                continue
            rows = []
            for subset in subsets:
                if self.download:
                    fetch_librispeech(self.root, subset, self.mirror, self.sha256)
                rows += librispeech_rows(self.root, subset)
            splits[split] = rows
        return splits
