"""Noise and room material made here, for tests and studies (no noise corpus can be downloaded).

- coloured noise: white (flat), pink (1/f power), brown (1/f^2 power), shaped in the frequency domain;
- babble: several talkers' clips summed at equal loudness. Make training babble from *training*
  speakers only, and test babble from other material, or the model sees its test noise in training;
- synthetic room impulse responses: exponentially decaying noise with a given RT60.

For real noise point ``augment.noise_dir`` at MUSAN's ``musan/noise`` (or ``musan/speech`` for
babble-like material) and ``augment.rir_dir`` at a folder of RIR wavs (docs/how-to/augmentation.md).

    python -m asr_transfer.data.noise coloured OUT_DIR [--seconds 30] [--sample-rate 16000]
    python -m asr_transfer.data.noise rirs OUT_DIR
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor

EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectral density ~ 1 / f^exponent


def coloured_noise(samples: int, colour: str, gen: torch.Generator) -> Tensor:
    """(samples,) noise with the colour's spectrum, peak-normalised to 0.5."""
    if colour not in EXPONENTS:
        raise ValueError(f"colour={colour!r}: use one of {list(EXPONENTS)}")
    white = torch.randn(samples, generator=gen)
    spec = torch.fft.rfft(white)
    f = torch.arange(spec.shape[0], dtype=torch.float32).clamp(min=1.0)
    x = torch.fft.irfft(spec / f.pow(EXPONENTS[colour] / 2), n=samples)
    x = x - x.mean()
    return 0.5 * x / x.abs().max().clamp(min=1e-8)


def babble(clips: Sequence[Tensor], samples: int, talkers: int, gen: torch.Generator) -> Tensor:
    """(samples,) babble: ``talkers`` tracks, each of randomly chosen ``clips`` laid end to end,
    every clip scaled to unit RMS so no talker dominates; peak-normalised to 0.5."""
    if len(clips) < talkers:
        raise ValueError(f"babble of {talkers} talkers needs at least that many clips, got {len(clips)}")
    out = torch.zeros(samples)
    for _ in range(talkers):
        track, filled = torch.zeros(samples), int(torch.randint(samples // 4 + 1, (), generator=gen))
        while filled < samples:
            c = clips[int(torch.randint(len(clips), (), generator=gen))]
            c = c / c.pow(2).mean().sqrt().clamp(min=1e-8)
            n = min(c.shape[0], samples - filled)
            if n <= 0:
                break
            track[filled : filled + n] = c[:n]
            filled += n
        # the first stretch of each track (before its first clip) is filled from the end: no silent lead-in
        track = torch.roll(track, -int(torch.randint(samples, (), generator=gen)))
        out += track
    return 0.5 * out / out.abs().max().clamp(min=1e-8)


def synthetic_rir(sample_rate: int, rt60: float, gen: torch.Generator) -> Tensor:
    """A direct path followed by exponentially decaying noise (60 dB down after ``rt60`` seconds)."""
    n = int(rt60 * sample_rate)
    t = torch.arange(n) / sample_rate
    tail = torch.randn(n, generator=gen) * torch.exp(-3 * math.log(10) * t / rt60)
    rir = 0.3 * tail
    rir[0] = 1.0
    return rir / rir.abs().max()


def write(path: Path, wav: Tensor, sample_rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.numpy(), sample_rate, subtype="FLOAT")
    return path


def write_coloured(
    out: Path, seconds: float, sample_rate: int, seed: int = 0, per_colour: int = 2
) -> list[Path]:
    gen = torch.Generator().manual_seed(seed)
    return [
        write(out / f"{colour}_{k}.wav", coloured_noise(int(seconds * sample_rate), colour, gen), sample_rate)
        for colour in EXPONENTS
        for k in range(per_colour)
    ]


def write_rirs(
    out: Path, sample_rate: int, rt60s: Sequence[float] = (0.2, 0.4, 0.7), seed: int = 0
) -> list[Path]:
    gen = torch.Generator().manual_seed(seed)
    return [
        write(out / f"rir_rt60_{r:.1f}.wav", synthetic_rir(sample_rate, r, gen), sample_rate) for r in rt60s
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["coloured", "rirs"])
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    files = (
        write_coloured(a.out, a.seconds, a.sample_rate, a.seed)
        if a.kind == "coloured"
        else write_rirs(a.out, a.sample_rate, seed=a.seed)
    )
    print(f"wrote {len(files)} files to {a.out}")


if __name__ == "__main__":
    main()
