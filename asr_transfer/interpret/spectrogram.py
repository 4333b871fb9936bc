"""Attribution over time x frequency, for any model of audio: the clip's short-time Fourier transform is
split into mel-spaced frequency bands and time windows, each (band, window) cell gets a gain, and
Captum's ``Occlusion`` sets one cell's gain to 0 at a time (that band silenced in that window, the rest
resynthesised exactly by the inverse STFT) and records the drop of the target logit.

The cells are what the model's own input spectrogram (Whisper's log-mel, a filterbank front end) sees as
time x frequency, without needing the backbone to expose its front end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import Occlusion
from torch import Tensor, nn

N_FFT, HOP = 512, 128  # hann window at hop N_FFT / 4: the inverse STFT reconstructs the clip exactly


def band_edges(n_bands: int, sample_rate: int) -> Tensor:
    """``n_bands + 1`` mel-spaced edges in Hz from 0 to Nyquist."""
    mel_max = 2595.0 * torch.log10(torch.tensor(1.0 + sample_rate / 2 / 700.0))
    mels = torch.linspace(0.0, float(mel_max), n_bands + 1)
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


class CellGain(nn.Module):
    """``gains (batch, bands, windows) -> logits`` of one clip: each STFT bin scaled by its cell's gain."""

    def __init__(self, model: Callable, wav: Tensor, sample_rate: int, n_bands: int, window: int) -> None:
        super().__init__()
        self.model, self.samples = model, wav.shape[-1]
        self.register_buffer("hann", torch.hann_window(N_FFT))
        self.spec = torch.stft(
            wav.float(), N_FFT, HOP, window=self.hann, return_complex=True
        )  # (bins, frames)
        freqs = torch.linspace(0, sample_rate / 2, self.spec.shape[0])
        self.band = (torch.bucketize(freqs, band_edges(n_bands, sample_rate)[1:-1])).long()  # bin -> band
        self.cell = (torch.arange(self.spec.shape[1]) * HOP // window).clamp(max=self.windows(window) - 1)

    def windows(self, window: int) -> int:
        return max(1, -(-self.samples // window))

    def forward(self, gains: Tensor) -> Tensor:
        g = gains[:, self.band][:, :, self.cell]  # (batch, bins, frames)
        wavs = torch.istft(self.spec * g, N_FFT, HOP, window=self.hann, length=self.samples)
        lengths = torch.full((wavs.shape[0],), self.samples, dtype=torch.long)
        return self.model(wavs, lengths)


def occlusion_time_frequency(
    model: Callable,
    wav: Tensor,
    sample_rate: int,
    n_bands: int = 8,
    window_s: float = 0.1,
    target: int | None = None,
) -> Tensor:
    """wav: (samples,) of one clip, ``model(wavs, lengths) -> logits`` -> (bands, windows): the drop of
    the ``target`` logit (default: the predicted class) when that band is silenced in that window."""
    window = max(1, int(window_s * sample_rate))
    cells = CellGain(model, wav, sample_rate, n_bands, window)
    ones = torch.ones(1, n_bands, cells.windows(window))
    with torch.no_grad():
        if target is None:
            target = int(cells(ones).argmax(-1))
        attr = Occlusion(cells).attribute(
            ones, sliding_window_shapes=(1, 1), baselines=0.0, target=target, perturbations_per_eval=16
        )
    return attr[0]
