"""Speech Commands v0.01 / v0.02 (Warden 2018) with the official validation/testing lists.

Layout (as the archive extracts): ``<version dir>/<word>/<speaker>_nohash_<n>.wav`` (16 kHz, <= 1 s),
``validation_list.txt``, ``testing_list.txt`` (paths relative to the version dir; everything else
trains) and ``_background_noise_/*.wav`` (a few minute-long noise recordings).

``classes``:
  * ``superb`` (default): SUPERB's 12-class keyword spotting: yes no up down left right on off stop go,
    ``_unknown_`` (every other word) and ``_silence_`` (1 s windows of the background noise);
  * a list of words: the same protocol with other keywords;
  * ``all``: every word is its own class (35 in v0.02, 30 in v0.01), no ``_unknown_``/``_silence_``.

``_silence_`` windows are cut deterministically and written once as wav files (each atomically)
next to the manifests. Each noise file is cut in time into train (first 80 %), val (next 10 %) and
test (last 10 %) regions, so no window overlaps another split's (the lists hold ~10 % each).
SUPERB crops the same noise files at random for train and val alike; fixed windows make runs
repeatable and the val/test silence unseen.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import soundfile as sf

from asr_transfer.data.corpora.base import Corpus
from asr_transfer.data.corpora.download import download_and_extract, mirrored
from asr_transfer.utils.atomic import atomic_path
from asr_transfer.utils.errors import MissingPathError
from asr_transfer.utils.hashing import stable_hash

log = logging.getLogger(__name__)
VERSIONS = ("v0.01", "v0.02")
SUPERB_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_DIR = "_background_noise_"
HASH_DIVIDER = "_nohash_"
NOISE_REGIONS = (("train", 0.0, 0.8), ("val", 0.8, 0.9), ("test", 0.9, 1.0))
CLIP_SECONDS = 1.0
OFFICIAL_BASE = "http://download.tensorflow.org/data"


def find_corpus(
    root: str | None, version: str, download_dir: str, mirror: str | None = None, sha256: str | None = None
) -> Path:
    """The version folder (the one holding ``validation_list.txt``): under ``root``, else downloaded once
    (the official archive, or the same file name under ``mirror``; checked against ``sha256``, by
    default torchaudio's checksum of the official one) and extracted to
    ``<download_dir>/SpeechCommands/speech_commands_<version>`` (torchaudio's layout)."""
    if version not in VERSIONS:
        raise ValueError(f"data.corpus.version={version!r}: use one of {list(VERSIONS)}")
    sub = f"speech_commands_{version}"
    if root:
        p = Path(root).expanduser()
        for cand in (p, p / "SpeechCommands" / sub, p / sub):
            if (cand / "validation_list.txt").is_file() and (cand / "testing_list.txt").is_file():
                return cand.resolve()
        raise MissingPathError(
            f"no Speech Commands {version} (validation_list.txt, testing_list.txt and <word>/*.wav, there "
            f"or in SpeechCommands/{sub}/)",
            f"data.corpus.root={root}",
            "point data.corpus.root at the extracted corpus, or data.corpus.root=null to download it",
        )
    from torchaudio.datasets.speechcommands import _CHECKSUMS

    official = f"{OFFICIAL_BASE}/{sub}.tar.gz"
    marker = f"SpeechCommands/{sub}"
    # the tarball has no top folder: its members go straight into the version folder
    out = download_and_extract(
        mirrored(official, mirror),
        Path(download_dir),
        marker,
        sha256 or _CHECKSUMS.get(official),
        into=marker,
    )
    return out.resolve()


def read_list(path: Path) -> set[str]:
    return {os.path.normpath(line.strip()) for line in path.read_text().splitlines() if line.strip()}


def words_in(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("_"))


def write_wav_atomic(path: Path, data, sample_rate: int, subtype: str) -> None:
    with atomic_path(path, suffix=".wav") as tmp:  # soundfile picks the format from the suffix
        sf.write(tmp, data, sample_rate, subtype=subtype)


def cut_silence(base: Path, out_dir: Path, stride: float) -> dict[str, list[dict]]:
    """1 s windows every ``stride`` seconds of each ``_background_noise_`` file, per split region.

    Returns ``{split: [manifest rows]}``; files already written are reused (same settings, same audio).
    """
    noise = sorted((base / NOISE_DIR).glob("*.wav"))
    if not noise:
        raise FileNotFoundError(f"{base / NOISE_DIR} has no wav files: _silence_ cannot be made")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {s: [] for s, _, _ in NOISE_REGIONS}
    for f in noise:
        info = sf.info(str(f))
        win, hop = int(CLIP_SECONDS * info.samplerate), max(1, int(stride * info.samplerate))
        audio = None
        for split, lo, hi in NOISE_REGIONS:
            start, stop = int(lo * info.frames), int(hi * info.frames)
            for k, s in enumerate(range(start, stop - win + 1, hop)):
                dest = out_dir / f"{f.stem}_{split}_{k:04d}.wav"
                if not dest.is_file():
                    if audio is None:
                        audio, _ = sf.read(str(f), dtype="float32", always_2d=False)
                    write_wav_atomic(dest, audio[s : s + win], info.samplerate, info.subtype)
                rows[split].append(
                    {
                        "audio_filepath": str(dest),
                        "duration": CLIP_SECONDS,
                        "label": SILENCE,
                        "speaker": f.stem,
                    }
                )
    return rows


class SpeechCommands(Corpus):
    """Speech Commands split by the official lists, labelled by ``classes`` (see the module docstring)."""

    name = "speech_commands"

    def __init__(
        self,
        root: str | None = None,
        version: str = "v0.02",
        classes: str | list[str] = "superb",
        silence_stride: float = 0.5,
        unknown_fraction: float | None = None,
        split_seed: int = 0,
        download_dir: str = ".cache/data",
        mirror: str | None = None,
        sha256: str | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        self.mirror, self.sha256 = mirror, sha256
        if version not in VERSIONS:
            raise ValueError(f"data.corpus.version={version!r}: use one of {list(VERSIONS)}")
        if isinstance(classes, str) and classes not in ("superb", "all"):
            raise ValueError(f"data.corpus.classes={classes!r}: use 'superb', 'all' or a list of words")
        if silence_stride <= 0:
            raise ValueError(f"data.corpus.silence_stride={silence_stride}: must be > 0 seconds")
        self.root, self.version, self.download_dir = root, version, download_dir
        self.classes = classes if isinstance(classes, str) else [str(w) for w in classes]
        self.silence_stride, self.unknown_fraction, self.seed = silence_stride, unknown_fraction, split_seed

    @property
    def keywords(self) -> list[str] | None:
        """The keyword classes, or None when every word is a class (``classes: all``)."""
        if self.classes == "all":
            return None
        return list(SUPERB_WORDS) if self.classes == "superb" else list(self.classes)

    def labels(self) -> list[str] | None:
        """The fixed class order for the keyword protocols (SUPERB's); None: sorted words."""
        kw = self.keywords
        return None if kw is None else [*kw, UNKNOWN, SILENCE]

    def base(self) -> Path:
        return find_corpus(self.root, self.version, self.download_dir, self.mirror, self.sha256)

    def settings(self) -> dict:
        base = self.base()
        lists = {n: (base / n).stat().st_size for n in ("validation_list.txt", "testing_list.txt")}
        return {
            "base": str(base),
            "lists": lists,
            "words": words_in(base),
            "classes": self.classes,
            "silence_stride": self.silence_stride,
            "unknown_fraction": self.unknown_fraction,
            "seed": self.seed,
        }

    def build(self) -> dict[str, list[dict]]:
        base = self.base()
        words = words_in(base)
        keywords = self.keywords
        if keywords is not None and set(keywords) - set(words):
            raise ValueError(
                f"data.corpus.classes: {sorted(set(keywords) - set(words))} are not words of {base} "
                f"(its words: {words})"
            )
        val, test = read_list(base / "validation_list.txt"), read_list(base / "testing_list.txt")
        splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for word in words:
            label = word if keywords is None or word in keywords else UNKNOWN
            for f in sorted((base / word).glob("*.wav")):
                rel = os.path.normpath(f"{word}/{f.name}")
                split = "test" if rel in test else "val" if rel in val else "train"
                speaker = f.stem.split(HASH_DIVIDER)[0]
                splits[split].append({"audio_filepath": str(f), "label": label, "speaker": speaker})
        if keywords is not None:
            if self.unknown_fraction is not None:
                splits = {s: self.limit_unknown(rows, s) for s, rows in splits.items()}
            silence_dir = self.manifest_dir / f"{self.name}-silence-{self.silence_key(base)}"
            for split, rows in cut_silence(base, silence_dir, self.silence_stride).items():
                splits[split] += rows
        return splits

    def limit_unknown(self, rows: list[dict], split: str) -> list[dict]:
        """Keep ``unknown_fraction`` x (keyword clips) ``_unknown_`` clips, chosen with ``seed`` (the TF recipe)."""
        known = [r for r in rows if r["label"] != UNKNOWN]
        unknown = [r for r in rows if r["label"] == UNKNOWN]
        random.Random(f"{self.seed}-{split}").shuffle(unknown)
        keep = unknown[: round(self.unknown_fraction * len(known))]
        return known + sorted(keep, key=lambda r: r["audio_filepath"])

    def silence_key(self, base: Path) -> str:
        noise = [(p.name, p.stat().st_size) for p in sorted((base / NOISE_DIR).glob("*.wav"))]
        return stable_hash([str(base), noise, self.silence_stride, NOISE_REGIONS, CLIP_SECONDS])
