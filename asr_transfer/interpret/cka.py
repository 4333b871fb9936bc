"""Linear CKA (Kornblith et al. 2019, "Similarity of neural network representations revisited") and the
relative weight change per layer: where fine-tuning moved the encoder.

CKA compares two sets of features of the same examples, ``x: (n, d1)`` and ``y: (n, d2)``; it is 1 for
identical features, invariant to orthogonal transforms and isotropic scaling of either side, and near 0
for unrelated features. The feature-space form ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on centred
features equals the kernel form (HSIC with linear kernels) and never builds an ``n x n`` matrix, so
it scales to every frame of a validation split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from asr_transfer.utils.masks import lengths_to_mask


def linear_cka(x: Tensor, y: Tensor) -> float:
    """x: (n, d1), y: (n, d2), rows are the same examples -> CKA in [0, 1]."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka needs (n, d) features of the same n rows, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = x.double() - x.double().mean(0)  # float64: the Frobenius norms square large sums
    y = y.double() - y.double().mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


def valid_frames(hidden: Tensor, lengths: Tensor | None) -> Tensor:
    """hidden: (batch, time, dim) -> (valid frames, dim): padding never enters the comparison."""
    if lengths is None:
        return hidden.reshape(-1, hidden.shape[-1])
    return hidden[lengths_to_mask(lengths, hidden.shape[1])]


def layer_cka(
    before: Sequence[Tensor], after: Sequence[Tensor], lengths: Tensor | None = None
) -> list[float]:
    """Per layer CKA between two models' hidden states of the same clips (each ``(batch, time, dim)``,
    both with the same frame ``lengths``)."""
    if len(before) != len(after):
        raise ValueError(f"layer_cka: {len(before)} layers before and {len(after)} after fine-tuning")
    return [linear_cka(valid_frames(a, lengths), valid_frames(b, lengths)) for a, b in zip(before, after)]


LAYER_INDEX = re.compile(r"\.(?:layers?|blocks?)\.(\d+)\.")  # hf/torchaudio/whisper: encoder.layers.<k>.


def layer_of(name: str) -> int | None:
    """The transformer layer a parameter belongs to (``...layers.3.attn...`` -> 3), None outside layers."""
    m = LAYER_INDEX.search(f".{name}")
    return int(m.group(1)) if m else None


def weight_change(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> dict[int, float]:
    """Relative weight change per layer ``||W_after - W_before|| / ||W_before||`` over the parameters
    both state dicts share (by name). For LoRA pass the merged weights as ``after`` (peft's
    ``merge_and_unload``), so the delta is the adapter's ``B A`` scaled, as the model applies it."""
    diff: dict[int, float] = {}
    norm: dict[int, float] = {}
    for name, w in before.items():
        k = layer_of(name)
        if k is None or name not in after or after[name].shape != w.shape:
            continue
        diff[k] = diff.get(k, 0.0) + float((after[name].double() - w.double()).pow(2).sum())
        norm[k] = norm.get(k, 0.0) + float(w.double().pow(2).sum())
    return {k: (diff[k] / norm[k]) ** 0.5 if norm[k] > 0 else 0.0 for k in sorted(diff)}


def effective_weights(module: torch.nn.Module) -> dict[str, Tensor]:
    """The weights a module applies, by parameter name: a peft LoRA layer's ``base_layer.weight`` plus its
    merged update (``get_delta_weight``), the adapters' own factors left out; bottleneck adapters (new
    parameters, no pretrained counterpart) are left out too."""
    weights = {n: p.detach() for n, p in module.named_parameters() if "lora_" not in n and "adapter" not in n}
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # no peft: no LoRA layers either
        return weights
    for name, m in module.named_modules():
        if isinstance(m, LoraLayer) and f"{name}.base_layer.weight" in weights:
            delta = sum(m.get_delta_weight(a) for a in m.active_adapters if a in m.lora_A)
            weights[f"{name}.base_layer.weight"] = weights[f"{name}.base_layer.weight"] + delta
    return weights
