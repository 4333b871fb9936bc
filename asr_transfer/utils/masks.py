"""Padding masks and the masked mean: what every layer that sees padded batches shares."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(batch,) lengths -> (batch, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(frames: Tensor, lengths: Tensor) -> Tensor:
    """frames: (batch, time, dim), lengths: (batch,) -> (batch, dim), padding ignored."""
    mask = lengths_to_mask(lengths, frames.shape[1]).to(frames.dtype).unsqueeze(-1)
    return (frames * mask).sum(1) / lengths.clamp(min=1).to(frames.dtype).unsqueeze(-1)
