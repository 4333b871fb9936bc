"""Per-clip attribution files: the numbers (``.npz``) and a PNG of the attribution over time drawn on the
clip's log-mel spectrogram, so "the model listened here" can be checked by eye against the speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asr_transfer.utils.atomic import atomic_path


def log_mel(wav: torch.Tensor, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """wav: (samples,) -> (n_mels, frames) log-mel, 10 ms hop."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=400 * sample_rate // 16000, hop_length=sample_rate // 100, n_mels=n_mels
    )(wav.float())
    return torch.log(mel + 1e-6).numpy()


def write_clip(
    folder: str | Path,
    name: str,
    attr: np.ndarray,
    seconds: float,
    title: str,
    wav=None,
    sample_rate: int = 16000,
) -> tuple[Path, Path]:
    """``<folder>/<name>.npz`` (attribution over time, its time axis in s) and ``<name>.png``; ``wav``
    (samples,) draws the log-mel underneath, without it only the curve is drawn."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    times = (np.arange(len(attr)) + 0.5) * seconds / max(len(attr), 1)
    with atomic_path(folder / f"{name}.npz", suffix=".npz") as tmp:
        np.savez(tmp, attribution=attr, times=times, seconds=seconds)
    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    if wav is not None:
        ax.imshow(
            log_mel(wav, sample_rate), origin="lower", aspect="auto", extent=(0, seconds, 0, 1), cmap="magma"
        )
    scale = np.abs(attr).max() or 1.0
    ax.plot(times, 0.5 + 0.45 * attr / scale, color="cyan", lw=1.5, label="attribution")
    ax.axhline(0.5, color="white", lw=0.5, ls=":")
    ax.set_xlim(0, seconds)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png = folder / f"{name}.png"
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    return folder / f"{name}.npz", png
