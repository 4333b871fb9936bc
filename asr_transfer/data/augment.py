"""Waveform augmentation for the training split: speed, reverb, noise, gain (in that order).
The datasets that apply it (per epoch, or as stored copies) are in ``data/augmented.py``.

Every draw comes from a ``torch.Generator`` seeded by (seed, epoch, clip index, augmentation),
never from a global random state, so a clip's augmentation is the same in any DataLoader worker,
with or without workers, and in a run resumed from a checkpoint. Drawing (``draw``) is kept apart
from processing (``apply``): the run's summary replays the draws to say how often each one applied
without touching audio.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from asr_transfer.data.audio import AUDIO_SUFFIXES, audio_files, load_audio
from asr_transfer.utils.hashing import file_key
from asr_transfer.utils.rng import clip_generator

log = logging.getLogger(__name__)
MEMO_SECONDS = 60  # noise files up to this long are kept whole in memory (a few MB each at 16 kHz)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def folder_files(folder: str | None, key: str) -> list[str]:
    """The audio files (``data.audio.AUDIO_SUFFIXES``) of the folder that config key ``key`` names."""
    if not folder:
        raise ValueError(
            f"{key} is not set: point it at a folder of audio files (see docs/how-to/augmentation.md)"
        )
    files = [str(f) for f in audio_files(Path(folder).expanduser())]
    if not files:
        raise FileNotFoundError(
            f"{key}={folder!r} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    return files


class WaveformAugmentation:
    """One augmentation applied with probability ``p``. ``draw`` returns its parameters for a clip
    (None: left alone); ``apply`` transforms ``wav: (samples,)`` at ``sample_rate``."""

    name = "base"

    def __init__(self, p: float = 1.0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augment.waveform.{self.name}.p={p}: a probability in [0, 1]")
        self.p = p

    def draw(self, gen: torch.Generator) -> dict | None:
        if float(torch.rand((), generator=gen)) >= self.p:
            return None
        return self.draw_params(gen)

    def draw_params(self, gen: torch.Generator) -> dict:
        raise NotImplementedError

    def apply(self, wav: Tensor, params: dict, sample_rate: int) -> Tensor:
        raise NotImplementedError

    def changes(self, params: dict | None) -> bool:
        """Whether a draw alters the clip (what the run's summary counts)."""
        return params is not None

    def identity(self) -> dict:
        """What its draws and outputs depend on: its settings, and a folder's files with their size and
        mtime (stored augmented copies are keyed by it: a changed noise folder is encoded again)."""
        out: dict = {"name": self.name}
        for key, value in sorted(vars(self).items()):
            out[key] = [file_key(f) for f in value] if key == "files" else value
        return out


class Speed(WaveformAugmentation):
    """Speed perturbation (Ko et al. 2015, Kaldi/SpeechBrain): resampling by one of ``factors``
    changes duration by 1/factor and pitch by the factor. 1.0 is a no-op draw."""

    name = "speed"

    def __init__(self, factors: list[float] = (0.9, 1.0, 1.1), p: float = 1.0) -> None:
        super().__init__(p)
        self.factors = [float(f) for f in factors]
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(
                f"augment.waveform.speed.factors={factors}: positive factors, e.g. [0.9, 1.0, 1.1]"
            )

    def draw_params(self, gen):
        return {"factor": self.factors[int(torch.randint(len(self.factors), (), generator=gen))]}

    def apply(self, wav, params, sample_rate):
        if params["factor"] == 1.0:
            return wav
        return AF.speed(wav, sample_rate, params["factor"])[0]

    def changes(self, params):
        return params is not None and params["factor"] != 1.0


class Gain(WaveformAugmentation):
    """Scale by a gain drawn uniformly in ``gain_db=[lo, hi]`` dB."""

    name = "gain"

    def __init__(self, gain_db: list[float] = (-6.0, 6.0), p: float = 1.0) -> None:
        super().__init__(p)
        self.lo, self.hi = (float(x) for x in gain_db)

    def draw_params(self, gen):
        return {"gain_db": _uniform(gen, self.lo, self.hi)}

    def apply(self, wav, params, sample_rate):
        return AF.gain(wav, params["gain_db"])


class _FromFolder(WaveformAugmentation):
    """Draws one file of a folder per clip."""

    key = "augment.dir"

    def __init__(self, folder: str | None, p: float = 1.0) -> None:
        super().__init__(p)
        self.files = folder_files(folder, self.key)


@lru_cache(maxsize=256)
def _load_short(path: str, sample_rate: int) -> Tensor:
    """Whole short files (RIRs, noise up to ``MEMO_SECONDS``), memoised per process (worker)."""
    return load_audio(path, sample_rate)


@lru_cache(maxsize=4096)
def _frames(path: str) -> tuple[int, int]:
    info = sf.info(path)
    return int(info.frames), int(info.samplerate)


class Noise(_FromFolder):
    """Additive noise from ``noise_dir`` at an SNR drawn uniformly in ``snr_db=[lo, hi]``.

    A random stretch of a random file, tiled when shorter than the clip; the SNR is measured over
    the whole clip and the whole noise stretch (``torchaudio.functional.add_noise``).
    """

    name = "noise"
    key = "augment.noise_dir"

    def __init__(self, noise_dir: str | None, snr_db: list[float] = (0.0, 20.0), p: float = 1.0) -> None:
        super().__init__(noise_dir, p)
        self.lo, self.hi = (float(x) for x in snr_db)
        if self.lo > self.hi:
            raise ValueError(f"augment.snr_db={list(snr_db)}: write it as [lo, hi]")

    def draw_params(self, gen):
        return {
            "file": int(torch.randint(len(self.files), (), generator=gen)),
            "start": float(torch.rand((), generator=gen)),
            "snr_db": _uniform(gen, self.lo, self.hi),
        }

    def apply(self, wav, params, sample_rate):
        path, n = self.files[params["file"]], wav.shape[-1]
        frames, sr = _frames(path)
        need = int(np.ceil(n * sr / sample_rate)) + 1
        if frames <= max(need, MEMO_SECONDS * sr):  # decoded and resampled once per worker, then sliced
            noise = noise_segment(_load_short(path, sample_rate), n, params["start"])
        else:  # long recordings (MUSAN): decode only the stretch the clip needs
            start = int(params["start"] * (frames - need + 1))
            noise = load_audio(path, sample_rate, max_samples=n, offset=start / sr)
            noise = noise_segment(noise, n, 0.0)
        return mix_at_snr(wav, noise, params["snr_db"])


class Reverb(_FromFolder):
    """Convolution with a room impulse response from ``rir_dir`` (its direct path aligned to t=0,
    unit energy), cropped back to the clip's length."""

    name = "reverb"
    key = "augment.rir_dir"

    def __init__(self, rir_dir: str | None, p: float = 1.0) -> None:
        super().__init__(rir_dir, p)

    def draw_params(self, gen):
        return {"file": int(torch.randint(len(self.files), (), generator=gen))}

    def apply(self, wav, params, sample_rate):
        rir = _load_short(self.files[params["file"]], sample_rate)
        rir = rir[int(rir.abs().argmax()) :]
        rir = rir / rir.norm().clamp(min=1e-8)
        return AF.fftconvolve(wav, rir)[: wav.shape[-1]]


def noise_segment(noise: Tensor, n: int, start: float) -> Tensor:
    """``n`` samples of ``noise`` from the fraction ``start`` of its length, tiled when it is shorter."""
    if noise.shape[-1] < n:
        noise = noise.repeat(n // noise.shape[-1] + 1)
    s = int(start * (noise.shape[-1] - n + 1))
    return noise[s : s + n]


def mix_at_snr(wav: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """``wav + k * noise`` with ``10 log10(|wav|^2 / |k noise|^2) = snr_db``."""
    if float(noise.pow(2).sum()) == 0.0 or float(wav.pow(2).sum()) == 0.0:
        return wav  # silence on either side has no defined SNR
    return AF.add_noise(wav[None], noise[None], torch.tensor([snr_db]))[0]


class WaveformAugment:
    """The training split's augmentations, applied in a fixed order (speed, reverb, noise, gain):
    reverberate the (speed-changed) voice before adding noise, as a room and a microphone would."""

    ORDER = ("speed", "reverb", "noise", "gain")

    def __init__(self, augmentations: list[WaveformAugmentation]) -> None:
        names = [a.name for a in augmentations]
        if len(set(names)) != len(names):
            raise ValueError(f"augment: each augmentation once, got {names}")
        self.augmentations = sorted(augmentations, key=lambda a: self.ORDER.index(a.name))

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.augmentations]

    def plan(self, seed: int, epoch: int, index: int) -> dict[str, dict | None]:
        return {a.name: a.draw(clip_generator(seed, epoch, index, a.name)) for a in self.augmentations}

    def __call__(self, wav: Tensor, seed: int, epoch: int, index: int, sample_rate: int) -> Tensor:
        for a in self.augmentations:
            params = a.draw(clip_generator(seed, epoch, index, a.name))
            if params is not None:
                wav = a.apply(wav, params, sample_rate)
        return wav.contiguous()

    def identity(self) -> list[dict]:
        return [a.identity() for a in self.augmentations]

    def counts(self, seed: int, epochs: int, num_clips: int) -> dict[str, int]:
        """How many (clip, epoch) draws each augmentation changed, replayed from the seeds."""
        out = dict.fromkeys(self.names, 0)
        for epoch in range(epochs):
            for i in range(num_clips):
                for a in self.augmentations:
                    out[a.name] += a.changes(a.draw(clip_generator(seed, epoch, i, a.name)))
        return out
