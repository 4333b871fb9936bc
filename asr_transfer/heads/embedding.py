"""Embedding heads for speaker verification: pool the frames into statistics, project to an embedding.

``forward(frames (B, T, D), lengths (B,)) -> embeddings (B, embedding_size)`` (not normalised: the
AAM-softmax and cosine scoring normalise). Statistics need frames, so stored features are frames;
``MeanEmbeddingHead`` reads only the mean, so a frozen run reads stored pooled vectors (a probe's store).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_transfer.heads.base import Head
from asr_transfer.utils.masks import lengths_to_mask, masked_mean


def masked_stats(frames: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean and standard deviation over time: frames (B, T, D), weights (B, T) summing to 1
    over valid frames -> (B, 2D)."""
    w = weights.unsqueeze(-1)
    mean = (w * frames).sum(1)
    var = (w * (frames - mean.unsqueeze(1)) ** 2).sum(1)
    return torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1)


class EmbeddingHead(Head):
    """Statistics pooling (mean and std over valid frames; x-vector) + layer norm + projection.
    ``num_classes`` (the training speakers) sizes the AAM-softmax in the task, not this head."""

    output = "utterance"
    pools_first = False

    def __init__(
        self, input_size: int, num_classes: int = 0, embedding_size: int = 192, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.norm = nn.LayerNorm(2 * input_size)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(2 * input_size, embedding_size)

    def weights(self, frames: Tensor, lengths: Tensor) -> Tensor:
        mask = lengths_to_mask(lengths, frames.shape[1]).to(frames.dtype)
        return mask / lengths.clamp(min=1).to(frames.dtype).unsqueeze(-1)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        if frames.dim() == 2:
            raise ValueError(f"head={type(self).__name__} pools statistics of frames, not pooled vectors")
        if lengths is None:
            lengths = torch.full((frames.shape[0],), frames.shape[1], device=frames.device)
        stats = masked_stats(frames, self.weights(frames, lengths))
        return self.project(self.dropout(self.norm(stats)))


class AttentiveEmbeddingHead(EmbeddingHead):
    """Attentive statistics pooling (Okabe et al. 2018): frame weights from a small attention network."""

    def __init__(self, input_size: int, attention_size: int = 128, **kwargs) -> None:
        super().__init__(input_size, **kwargs)
        self.attention = nn.Sequential(
            nn.Linear(input_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1)
        )

    def weights(self, frames: Tensor, lengths: Tensor) -> Tensor:
        mask = lengths_to_mask(lengths, frames.shape[1])
        scores = self.attention(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores.float(), dim=1).to(frames.dtype)


class MeanEmbeddingHead(EmbeddingHead):
    """Mean pooling + layer norm + projection: a function of the mean over frames only, so the features
    stage stores one pooled vector per layer and clip (the store the tagging and regression probes read)."""

    pools_first = True

    def __init__(
        self, input_size: int, num_classes: int = 0, embedding_size: int = 192, dropout: float = 0.0
    ) -> None:
        super().__init__(input_size, num_classes, embedding_size, dropout)
        self.norm = nn.LayerNorm(input_size)
        self.project = nn.Linear(input_size, embedding_size)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        pooled = frames if frames.dim() == 2 else masked_mean(frames, lengths)
        return self.project(self.dropout(self.norm(pooled)))
