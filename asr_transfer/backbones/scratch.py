"""The no-transfer baseline: a small log-mel transformer trained from random weights.

Same interface and frame rate (50 Hz) as wav2vec2, so every head and featurizer runs on it
unchanged and "pretrained vs. scratch" differs in nothing but the encoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_transfer.backbones.base import Backbone
from asr_transfer.utils.masks import lengths_to_mask

SAMPLE_RATE = 16000  # the default input rate: the STFT below has 25 ms windows and a 10 ms hop at it
N_FFT = 400
HOP = 160


class ScratchBackbone(Backbone):
    """Log-mel -> 2 convs (stride 2 in total) -> sinusoidal positions -> pre-LN transformer.

    wavs (batch, samples) -> ``num_layers + 1`` states of (batch, frames, hidden_size): the conv
    front end output with positions, then each transformer layer (the last one layer-normed).
    About 3.4 M parameters with the defaults.

    Exact padding invariance by construction: the STFT is uncentred (no frame reaches past a
    clip's end), and padded frames are zeroed before each convolution and masked in attention.
    """

    normalize_waveform = True  # fixes the log-mel scale; nothing else normalises the input

    @classmethod
    def input_rate(cls, sample_rate: int = SAMPLE_RATE, **_) -> int:
        return int(sample_rate)

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_mels: int = 80,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        freeze: str = "none",
        **settings,
    ) -> None:
        super().__init__(freeze=freeze, **settings)
        if self.layer_drop:
            raise ValueError("backbone=scratch has no LayerDrop: leave backbone.layer_drop unset")
        import torchaudio

        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_layers = num_layers + 1
        self.downsample_rate = HOP * 2
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=n_mels, center=False
        )
        self.conv1 = nn.Conv1d(n_mels, hidden_size, 3, padding=1)
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, 3, stride=2, padding=1)
        self.in_norm = nn.LayerNorm(hidden_size)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden_size,
                num_heads,
                dim_feedforward=4 * hidden_size,
                dropout=0.1,
                activation="gelu",
                batch_first=True,
                norm_first=True,  # pre-LN trains stably from scratch without warm-up tricks
            )
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_size)
        self.apply_freeze()

    def identity(self) -> str:
        return (
            f"scratch:sr={self.sample_rate}:mels={self.n_mels}:d={self.hidden_size}"
            f":layers={self.num_layers - 1}:heads={self.num_heads}"
        )

    def feature_encoder_modules(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.in_norm]

    def transformer_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def _mel_frames(self, lengths: Tensor) -> Tensor:
        # Clips shorter than one window are zero padded to one window (see _forward).
        return (torch.div(lengths.clamp(min=N_FFT) - N_FFT, HOP, rounding_mode="floor") + 1).clamp(min=1)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(self._mel_frames(lengths) - 1, 2, rounding_mode="floor") + 1

    def _forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs: (batch, samples); lengths: (batch,) -> num_layers x (batch, frames, D), (batch,)."""
        if wavs.shape[-1] < N_FFT:
            wavs = F.pad(wavs, (0, N_FFT - wavs.shape[-1]))
        mel = (self.mel(wavs.float()) + 1e-6).log()  # (batch, n_mels, mel_frames)
        n_mel = self._mel_frames(lengths)
        # Zero past each clip's end so the padded convs see what the clip alone sees.
        x = mel * lengths_to_mask(n_mel, mel.shape[-1])[:, None, :]
        x = F.gelu(self.conv1(x)) * lengths_to_mask(n_mel, mel.shape[-1])[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (batch, frames, D)
        frames = self.frame_lengths(lengths)
        x = self.in_norm(x) + _sinusoids(x.shape[1], self.hidden_size, x.device, x.dtype)
        pad = ~lengths_to_mask(frames, x.shape[1])
        hidden = [x]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
            hidden.append(x)
        hidden[-1] = self.out_norm(x)
        return hidden, frames


def _sinusoids(length: int, dim: int, device, dtype) -> Tensor:
    """(length, dim) fixed sine/cosine positions (Vaswani et al.); no maximum length."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)
