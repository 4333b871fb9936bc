"""A generated corpus of bad and odd-but-valid audio files (robustness tests), and a throttle callback.

``make_cases(folder, source, sr)`` writes every case next to each other and returns them as
``Case`` records: ``reason`` is the ``AudioError`` reason a bad file must produce (None: the file
is odd but valid and must load), ``stage`` says where the fault is found (``header``: before the
first step, ``decode``: where the audio is decoded). ``source`` is any mono clip (a real FSDD
digit when ../shared exists, else a tone) so that odd files keep their label.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from lightning.pytorch.callbacks import Callback


@dataclass
class Case:
    name: str
    path: Path
    reason: str | None = None  # expected AudioError reason; None = valid, must load
    stage: str = "header"  # header | decode (only for bad cases)
    seconds: float | None = None  # expected decoded duration for valid cases (None: not checked)


def resample(x: np.ndarray, sr: int, new: int) -> np.ndarray:
    return torchaudio.functional.resample(torch.from_numpy(x.astype(np.float32)), sr, new).numpy()


def _wav(path: Path, data: np.ndarray, sr: int, subtype: str = "PCM_16", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype, **kw)
    return path


def bad_cases(folder: Path, source: np.ndarray, sr: int) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    x = source.astype(np.float32)
    cases = [Case("missing", folder / "missing.wav", "missing")]
    (folder / "empty.wav").write_bytes(b"")
    cases.append(Case("empty file", folder / "empty.wav", "empty"))
    (folder / "text.wav").write_text("this is a text file, not audio\n" * 20)
    cases.append(Case("text file named .wav", folder / "text.wav", "unreadable"))
    full = _wav(folder / "full.wav", x, sr).read_bytes()
    (folder / "full.wav").unlink()
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])
    cases.append(Case("truncated WAV", folder / "truncated.wav", "truncated"))
    (folder / "header_only.wav").write_bytes(full[:36])  # RIFF + fmt, no data chunk
    cases.append(Case("WAV without data chunk", folder / "header_only.wav", "unreadable"))
    cases.append(
        Case("zero-sample WAV", _wav(folder / "zero.wav", np.zeros(0, np.float32), sr), "zero_samples")
    )
    nan = x.copy()
    nan[len(nan) // 3] = np.nan
    cases.append(
        Case("float WAV with NaN", _wav(folder / "nan.wav", nan, sr, "FLOAT"), "non_finite", "decode")
    )
    inf = x.copy()
    inf[-5:] = np.inf
    cases.append(
        Case("float WAV with Inf", _wav(folder / "inf.wav", inf, sr, "FLOAT"), "non_finite", "decode")
    )
    (folder / "a_folder.wav").mkdir()
    cases.append(Case("directory", folder / "a_folder.wav", "directory"))
    os.symlink(folder / "gone.wav", folder / "dangling.wav")
    cases.append(Case("dangling symlink", folder / "dangling.wav", "dangling_link"))
    (folder / "noise.xyz").write_bytes(np.random.default_rng(0).bytes(4000))
    cases.append(Case("raw bytes, unknown suffix", folder / "noise.xyz", "unsupported_format"))
    (folder / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(1).bytes(4000))
    cases.append(Case("MP4 container", folder / "clip.mp4", "unsupported_format"))
    flac = _wav(folder / "whole.flac", np.tile(x, 4), sr).read_bytes()
    (folder / "whole.flac").unlink()
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    cases.append(Case("truncated FLAC", folder / "truncated.flac", "corrupt", "decode"))
    ogg = _wav(folder / "whole.ogg", x, sr, "VORBIS", format="OGG").read_bytes()
    (folder / "whole.ogg").unlink()
    (folder / "truncated.ogg").write_bytes(ogg[: len(ogg) // 2])
    cases.append(Case("truncated OGG", folder / "truncated.ogg", "unreadable"))
    if not cannot_make():
        locked = _wav(folder / "locked.wav", x, sr)
        locked.chmod(0)
        cases.append(Case("no read permission", locked, "permission"))
    return cases


BAD_CASES = 15  # every case bad_cases can write; cannot_make() says which this process cannot


def cannot_make() -> dict[str, str]:
    """Bad cases this process cannot write, with why: root reads any file, so no permission fault."""
    return {"no read permission": "running as root, which reads any file"} if os.geteuid() == 0 else {}


def odd_cases(folder: Path, source: np.ndarray, sr: int) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    x = source.astype(np.float32)
    x = 0.5 * x / max(float(np.abs(x).max()), 1e-6)
    sec = len(x) / sr
    cases = [
        Case("stereo", _wav(folder / "stereo.wav", np.stack([x, x], 1), sr), seconds=sec),
        Case("6 channels", _wav(folder / "six.wav", np.stack([x] * 6, 1), sr), seconds=sec),
    ]
    for rate in (8000, 22050, 44100, 48000, 96000):
        cases.append(
            Case(f"{rate} Hz", _wav(folder / f"rate{rate}.wav", resample(x, sr, rate), rate), seconds=sec)
        )
    for subtype in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        name = f"WAV {subtype}"
        cases.append(Case(name, _wav(folder / f"{subtype.lower()}.wav", x, sr, subtype), seconds=sec))
    cases.append(Case("FLAC", _wav(folder / "clip.flac", x, sr), seconds=sec))
    cases.append(Case("OGG/Vorbis", _wav(folder / "clip.ogg", x, sr, "VORBIS", format="OGG"), seconds=sec))
    cases.append(Case("MP3", _wav(folder / "clip.mp3", x, sr, "MPEG_LAYER_III", format="MP3")))
    cases.append(Case("upper-case .WAV", _wav(folder / "UPPER.WAV", x, sr), seconds=sec))
    cases.append(Case("clipped", _wav(folder / "clipped.wav", np.clip(8 * x, -1, 1), sr), seconds=sec))
    cases.append(Case("very quiet (-80 dB)", _wav(folder / "quiet.wav", 1e-4 * x, sr, "FLOAT"), seconds=sec))
    cases.append(Case("all silent", _wav(folder / "silent.wav", np.zeros_like(x), sr), seconds=sec))
    cases.append(Case("5 ms clip", _wav(folder / "short5ms.wav", x[: max(1, sr // 200)], sr)))
    cases.append(Case("1 sample", _wav(folder / "one_sample.wav", x[:1], sr)))
    reps = int(np.ceil(60 * sr / len(x)))
    cases.append(
        Case("60 s recording", _wav(folder / "long60s.wav", np.tile(x, reps)[: 60 * sr], sr), seconds=60.0)
    )
    return cases


class Throttle(Callback):
    """Sleeps after every training batch (changes no numbers): lets a test kill a run mid-epoch."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)
