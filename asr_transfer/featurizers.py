"""Featurizers: turn the backbone's hidden layers into one representation.

A featurizer owns layer selection: ``layers`` names the hidden states it reads (in the order its
``forward`` expects them), ``select`` stacks them from a backbone's full list, and the features
stage stores exactly those. ``forward`` takes that stacked selection ``(len(layers), ...)`` and
reduces the first dimension, so the same module works on frames ``(L, B, T, D)`` and on stored
pooled vectors ``(L, B, D)``. ``output_size`` is the size of what comes out (the head's input).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Featurizer(nn.Module):
    """Base: ``forward(stack: (len(layers), *rest)) -> (*rest, output_size)``.

    ``is_linear``: the output is a linear function of the layers, so it commutes with mean pooling over
    frames and the features store may keep pooled vectors for a mean-pooling head (``pools_first``).
    """

    @classmethod
    def is_linear(cls, **settings) -> bool:
        """Whether this featurizer with these config settings is linear (the run plan asks before
        anything is built: it decides whether pooled vectors are stored)."""
        return True

    def __init__(self, num_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.num_layers, self.hidden_size = num_layers, hidden_size

    @property
    def layers(self) -> list[int]:
        """The hidden states this featurizer reads, in the order ``forward`` stacks them."""
        return list(range(self.num_layers))

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def select(self, hidden: Sequence[Tensor]) -> Tensor:
        """A backbone's ``num_layers`` hidden states -> the stacked selection ``(len(layers), ...)``."""
        if len(hidden) != self.num_layers:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_layers} hidden states, got {len(hidden)} "
                "(LayerDrop must be off when layers are summed)"
            )
        return torch.stack([hidden[i] for i in self.layers])


class LastLayer(Featurizer):
    @property
    def layers(self) -> list[int]:
        return [self.num_layers - 1]

    def forward(self, stack: Tensor) -> Tensor:
        return stack[0]


class SingleLayer(Featurizer):
    """One chosen hidden layer; ``layer`` counts from 0 (the pre-transformer state), negatives from the top."""

    def __init__(self, num_layers: int, hidden_size: int, layer: int = -1) -> None:
        super().__init__(num_layers, hidden_size)
        if not -num_layers <= layer < num_layers:
            raise ValueError(
                f"featurizer.layer={layer} but the backbone has {num_layers} hidden states (0..{num_layers - 1})"
            )
        self.layer = layer % num_layers

    @property
    def layers(self) -> list[int]:
        return [self.layer]

    def forward(self, stack: Tensor) -> Tensor:
        return stack[0]


class WeightedSum(Featurizer):
    """SUPERB's learned softmax-weighted sum over all hidden layers (optionally layer-normed first)."""

    def __init__(self, num_layers: int, hidden_size: int, layer_norm: bool = False) -> None:
        super().__init__(num_layers, hidden_size)
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.layer_norm = layer_norm

    @classmethod
    def is_linear(cls, layer_norm: bool = False, **_) -> bool:
        return not layer_norm  # a per-frame layer norm does not commute with the mean over frames

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
        # One matrix-vector product over the layer axis (BLAS), not a broadcast product and a sum: the
        # full-batch probe evaluates this hundreds of times over every stored clip.
        return torch.tensordot(self.weights().to(stack.dtype), stack, dims=1)


class Concat(Featurizer):
    """Every hidden layer side by side: ``(L, *rest, D) -> (*rest, L * D)``, layer 0 first.

    The probe sees each layer with its own weights (a weighted sum shares one map across layers).
    Exact on stored pooled vectors: the mean over frames of a concatenation is the concatenation
    of the per-layer means.
    """

    @property
    def output_size(self) -> int:
        return self.num_layers * self.hidden_size

    def forward(self, stack: Tensor) -> Tensor:
        if stack.shape[0] != self.num_layers:
            raise ValueError(f"concat expects {self.num_layers} hidden states, got {stack.shape[0]}")
        return stack.movedim(0, -2).flatten(-2)
