"""Utterance-level heads: pooling over valid frames, then a classifier.

Heads with ``pools_first = True`` are a function of the mean over valid frames only, so the
feature cache may store per-layer mean vectors instead of frames: for a weighted sum
``mean_t(sum_l w_l h_lt) = sum_l w_l mean_t(h_lt)`` exactly (up to float rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_transfer.heads.base import Head
from asr_transfer.utils.masks import lengths_to_mask, masked_mean


class UtteranceHead(Head):
    output = "utterance"
    pools_first = True

    def pool(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return masked_mean(frames, lengths)

    def classify(self, pooled: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        """frames: (batch, time, dim) with lengths, or already pooled (batch, dim) -> logits (batch, classes)."""
        if frames.dim() == 2:
            return self.classify(frames)
        return self.classify(self.pool(frames, lengths))


class LinearHead(UtteranceHead):
    """Mean pooling + (layer norm) + dropout + one linear layer: the standard frozen-encoder probe.

    ``input_norm`` layer-normalises the pooled vector: frozen features of very different scales
    per dimension otherwise make a few epochs of Adam under-fit. Applied after pooling, so cached
    pooled features stay exact.
    """

    def __init__(
        self, input_size: int, num_classes: int, dropout: float = 0.0, input_norm: bool = True
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(input_size) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, num_classes)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.linear(self.dropout(self.norm(pooled)))


class MLPHead(UtteranceHead):
    """Mean pooling + (layer norm, as in ``LinearHead``) + MLP (projection, nonlinearity, dropout) + linear."""

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.1,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(input_size) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        size = input_size
        for _ in range(num_layers):
            layers += [nn.Linear(size, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            size = hidden_size
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(size, num_classes)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.out(self.mlp(self.norm(pooled)))


class AttentiveHead(UtteranceHead):
    """Attentive statistics pooling (Okabe et al. 2018): attention-weighted mean and std over valid frames."""

    pools_first = False

    def __init__(
        self, input_size: int, num_classes: int, attention_size: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(input_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * input_size, num_classes)

    def pool(self, frames: Tensor, lengths: Tensor) -> Tensor:
        mask = lengths_to_mask(lengths, frames.shape[1])
        scores = self.attention(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores.float(), dim=1).to(frames.dtype).unsqueeze(-1)
        mean = (w * frames).sum(1)
        var = (w * (frames - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1)

    def classify(self, pooled: Tensor) -> Tensor:
        return self.out(self.dropout(pooled))

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        if frames.dim() == 2:
            raise ValueError(
                "head=attentive needs frames, not pooled vectors (the feature cache stores frames for it)"
            )
        return self.classify(self.pool(frames, lengths))
