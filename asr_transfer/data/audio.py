"""Audio I/O: cheap header checks and decoding to mono float32 at the backbone's rate.

Decoding uses ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, ...); torchaudio only resamples.
Every failure is an ``AudioError`` with a machine-readable ``reason`` and a hint saying what to do.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from asr_transfer.utils.errors import UserError

# reason -> what the user should do about it
REASONS = {
    "missing": "the file does not exist: fix the path in the manifest or remove the entry",
    "dangling_link": "the path is a symbolic link whose target is gone: restore the target or remove the entry",
    "directory": "the path is a directory, not an audio file: point the entry at a file",
    "empty": "the file has 0 bytes (an interrupted copy?): re-copy it or remove the entry",
    "unsupported_format": "libsndfile cannot read this format: convert it to WAV/FLAC (e.g. ffmpeg -i in.x out.flac)",
    "unreadable": "the file is not audio libsndfile recognises (a text file? a bad header?): re-export it or remove the entry",
    "corrupt": "the header is valid but decoding fails part-way (truncated or damaged data): re-copy it or remove the entry",
    "truncated": "the file is shorter than its header says (an interrupted write?): re-copy it or remove the entry",
    "zero_samples": "the file decodes to no samples: remove the entry",
    "non_finite": "the decoded audio contains NaN or Inf samples: re-export it or remove the entry",
    "permission": "the file cannot be opened (permission denied): fix its permissions",
    "too_long": "longer than data.max_duration with data.long_audio=skip: raise max_duration or use long_audio=crop",
}

# The audio formats we read (libsndfile's, less the ones that are not audio a user means): what
# folder corpora and predict.py pick up, and what a read failure on any other suffix blames.
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf", ".opus", ".sph"}
)


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (any depth, by ``AUDIO_SUFFIXES``), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


class AudioError(UserError):
    """A file that does not read as audio: ``<reason> (<detail>), <path>. Fix: <hint>``; ``reason`` is
    machine-readable (``REASONS``). ``at(where)`` adds where the file is listed."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path, self.reason, self.detail = str(path), reason, detail
        fix = REASONS.get(reason, "")
        if fix and reason != "too_long":  # a run or predict.py may also leave bad files out
            fix += ", or leave such files out with data.on_bad_audio=skip"
        super().__init__(f"{reason} audio" + (f" ({detail})" if detail else ""), str(path), fix)

    def at(self, where: str) -> AudioError:
        """The same fault, saying where the file is listed (split, manifest line)."""
        return AudioError(self.path, self.reason, where + (f"; {self.detail}" if self.detail else ""))


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def check_header(path: str) -> AudioInfo:
    """Validate a file without decoding it (stat + header only): cheap enough for every file up front.

    Raises ``AudioError`` with reason missing, dangling_link, directory, empty, permission,
    unsupported_format (a suffix libsndfile does not read), unreadable (not audio / bad header),
    zero_samples or truncated (a WAV shorter than its data chunk says).
    """
    if not os.path.lexists(path):
        raise AudioError(path, "missing")
    if os.path.islink(path) and not os.path.exists(path):
        raise AudioError(path, "dangling_link", f"-> {os.readlink(path)}")
    if os.path.isdir(path):
        raise AudioError(path, "directory")
    size = os.path.getsize(path)
    if size == 0:
        raise AudioError(path, "empty")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioError(path, "permission") from None
    try:
        info = sf.info(path)
    except Exception as e:  # noqa: BLE001 - libsndfile (or its cffi layer) failing to parse = not readable audio
        msg = str(e).split(":", 1)[-1].strip() or str(e)
        suffix = os.path.splitext(path)[1].lower()
        # An unknown suffix is a format problem (convert it); a known one that fails is a broken file.
        reason = "unsupported_format" if suffix not in AUDIO_SUFFIXES else "unreadable"
        raise AudioError(path, reason, msg) from None
    if info.frames <= 0:
        raise AudioError(path, "zero_samples")
    if info.format == "WAV" or path.lower().endswith(".wav"):
        _check_wav_truncation(path, size)
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def check_content(path: str, block_seconds: float = 10.0) -> AudioInfo:
    """Decode the whole file in blocks (bounded memory) and check every sample is finite.

    The full check ``check_data.py`` runs; training finds the same faults where it decodes.
    Raises what ``check_header`` raises, plus ``corrupt`` and ``non_finite``.
    """
    info = check_header(path)
    bad = frames = 0
    try:
        for block in sf.blocks(
            path, blocksize=max(1, int(block_seconds * info.sample_rate)), dtype="float32"
        ):
            frames += block.shape[0]
            bad += int(block.size - np.isfinite(block).sum())
    except Exception as e:  # noqa: BLE001 - a decoder error after a valid header
        raise AudioError(path, "corrupt", str(e).split(":", 1)[-1].strip()) from None
    if frames == 0:
        raise AudioError(path, "zero_samples")
    if bad:
        raise AudioError(path, "non_finite", f"{bad} NaN/Inf samples")
    return info


def _check_wav_truncation(path: str, size: int) -> None:
    """libsndfile silently reads a truncated WAV: compare the data chunk's declared size to the file."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"data":
                # 0xFFFFFFFF / 0 are streaming placeholders some writers use: not a truncation.
                if csize not in (0, 0xFFFFFFFF) and pos + 8 + csize > size:
                    raise AudioError(
                        path, "truncated", f"data chunk declares {csize} bytes, {size - pos - 8} present"
                    )
                return
            pos += 8 + csize + (csize & 1)


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    """One windowed-sinc kernel per rate pair (computing it per clip costs more than resampling)."""
    return torchaudio.transforms.Resample(orig, new)


def load_audio(
    path: str,
    sample_rate: int,
    max_samples: int | None = None,
    offset: float = 0.0,
    min_samples: int = 0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode ``path`` to a mono float32 tensor (samples,) at ``sample_rate``.

    Multi-channel audio is averaged; any input rate is resampled (torchaudio's windowed sinc).
    ``offset`` and ``duration`` (seconds, a manifest row's) are the stretch read: soundfile seeks to
    the first sample and stops after the last, so a segment of a long recording (a Lhotse cut) never
    decodes the rest. ``max_samples`` (at the target rate) crops the same way. ``min_samples``
    zero-pads clips shorter than the backbone's receptive field. Raises ``AudioError`` (reasons as
    ``check_content``).
    """
    try:
        info = sf.info(path)
        start = int(round(offset * info.samplerate))
        stop = None if duration is None else start + int(round(duration * info.samplerate))
        if max_samples is not None:
            crop = start + int(np.ceil(max_samples * info.samplerate / sample_rate))
            stop = crop if stop is None else min(stop, crop)
        data, sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - find the precise reason, else the decoder failed mid-stream
        check_header(path)  # missing, empty, truncated, ... raise here
        raise AudioError(path, "corrupt", str(e).split(":", 1)[-1].strip()) from None
    if data.shape[0] == 0:
        raise AudioError(path, "zero_samples", f"nothing after offset {offset} s" if offset else "")
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if not bool(torch.isfinite(wav).all()):
        raise AudioError(path, "non_finite", f"{int((~torch.isfinite(wav)).sum())} NaN/Inf samples")
    if sr != sample_rate:
        wav = _resampler(sr, sample_rate)(wav)
    if max_samples is not None:
        wav = wav[:max_samples]
    if wav.shape[0] < min_samples:
        wav = torch.nn.functional.pad(wav, (0, min_samples - wav.shape[0]))
    return wav.contiguous()
