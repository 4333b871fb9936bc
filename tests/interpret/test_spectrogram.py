"""Time x frequency occlusion: a model that listens to one band in one stretch of time is found there."""

import math

import torch

from asr_transfer.interpret.spectrogram import band_edges, occlusion_time_frequency

SR = 16000


def band_energy_model(lo: float, hi: float, start: int, stop: int):
    """``(wavs, lengths) -> logits (batch, 2)``: class 1's logit is the energy between ``lo`` and ``hi`` Hz
    within samples ``start:stop``; class 0's a constant."""

    def model(wavs, lengths):
        spec = torch.fft.rfft(wavs[:, start:stop], dim=-1).abs() ** 2
        freqs = torch.fft.rfftfreq(stop - start, 1 / SR)
        energy = spec[:, (freqs >= lo) & (freqs < hi)].sum(-1) / (stop - start)
        return torch.stack([torch.full_like(energy, 0.1), energy], dim=-1)

    return model


def test_band_edges_are_mel_spaced_from_zero_to_nyquist():
    edges = band_edges(8, SR)
    assert len(edges) == 9 and edges[0] == 0 and math.isclose(float(edges[-1]), SR / 2, rel_tol=1e-4)
    widths = edges[1:] - edges[:-1]
    assert torch.all(widths[1:] > widths[:-1])  # wider towards the top, as the mel scale is


def test_occlusion_finds_the_band_and_the_window_the_model_listens_to():
    t = torch.arange(SR // 2) / SR  # 0.5 s: five 0.1 s windows
    wav = 0.3 * torch.sin(2 * math.pi * 1000 * t)  # 1 kHz throughout
    wav += 0.3 * torch.sin(2 * math.pi * 3000 * t)  # and 3 kHz, which the model ignores
    edges = band_edges(8, SR).tolist()
    band = next(i for i in range(8) if edges[i] <= 1000 < edges[i + 1])
    model = band_energy_model(edges[band], edges[band + 1], 2 * 1600, 3 * 1600)  # window 2
    attr = occlusion_time_frequency(model, wav, SR, n_bands=8, window_s=0.1)
    assert attr.shape == (8, 5)
    assert divmod(int(attr.argmax()), 5) == (band, 2)
    positive = attr.clamp(min=0)
    assert positive[band, 2] / positive.sum() > 0.8
