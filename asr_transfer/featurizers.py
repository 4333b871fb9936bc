"""Featurizers: turn the backbone's stack of hidden layers into one representation.

Every featurizer takes a stacked tensor ``(layers, ...)`` and reduces the first dimension, so the
same module works on frames ``(L, B, T, D)`` and on cached pooled vectors ``(L, B, D)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Featurizer(nn.Module):
    """Base: ``forward(stack: (layers, *rest)) -> (*rest)``.

    ``linear``: the output is a linear function of the layers, so it commutes with mean pooling over
    frames and the cache may store pooled vectors for a mean-pooling head (``pools_first``).
    """

    linear = True

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers

    # Which layers the featurizer reads: the feature cache stores only these.
    def layers_used(self) -> list[int]:
        return list(range(self.num_layers))

    def select(self, stack: Tensor) -> Tensor:
        """Keep only ``layers_used()`` from a full stack (the cache stores the reduced stack)."""
        used = self.layers_used()
        return stack if len(used) == stack.shape[0] else stack[used]


class LastLayer(Featurizer):
    def layers_used(self) -> list[int]:
        return [self.num_layers - 1]

    def forward(self, stack: Tensor) -> Tensor:
        return stack[-1]


class SingleLayer(Featurizer):
    """One chosen hidden layer; ``layer`` counts from 0 (the pre-transformer state), negatives from the top."""

    def __init__(self, num_layers: int, layer: int = -1) -> None:
        super().__init__(num_layers)
        if not -num_layers <= layer < num_layers:
            raise ValueError(
                f"featurizer.layer={layer} but the backbone has {num_layers} hidden states (0..{num_layers - 1})"
            )
        self.layer = layer % num_layers

    def layers_used(self) -> list[int]:
        return [self.layer]

    def forward(self, stack: Tensor) -> Tensor:
        return stack[-1] if stack.shape[0] == 1 else stack[self.layer]


class WeightedSum(Featurizer):
    """SUPERB's learned softmax-weighted sum over all hidden layers (optionally layer-normed first)."""

    def __init__(self, num_layers: int, layer_norm: bool = False) -> None:
        super().__init__(num_layers)
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.layer_norm = layer_norm
        self.linear = not layer_norm  # a per-frame layer norm does not commute with the mean over frames

    def weights(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, stack: Tensor) -> Tensor:
        if stack.shape[0] != self.num_layers:
            raise ValueError(
                f"weighted sum expects {self.num_layers} hidden states, got {stack.shape[0]} "
                "(LayerDrop must be off when layers are summed)"
            )
        if self.layer_norm:
            stack = nn.functional.layer_norm(stack, stack.shape[-1:])
        w = self.weights().to(stack.dtype).view(-1, *([1] * (stack.dim() - 1)))
        return (w * stack).sum(0)
