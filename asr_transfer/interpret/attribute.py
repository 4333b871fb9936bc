"""Attributions over time with Captum, at two levels.

- Stored frames (``frame_attributions``): the per-layer frames a frozen run trains from, through the
  featurizer and head only; no backbone is needed. Integrated gradients or gradient x input, summed
  over layers and feature dimensions -> one value per frame.
- Input audio (``occlusion_over_time``): silence one time window at a time and watch the chosen logit
  fall, through whatever maps ``(wavs, lengths) -> logits`` (backbone, featurizer, head): model-agnostic.

Positive values support the explained class; the baseline is zeros (silence, or all-zero frames), the
same thing the deletion test (``faithfulness.py``) masks with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency
from torch import Tensor, nn

from asr_transfer.utils.masks import lengths_to_mask

# saliency: |gradient|, unsigned, so its "positive mass" is all of it; the others are signed
METHODS = {
    "integrated_gradients": IntegratedGradients,
    "input_x_gradient": InputXGradient,
    "saliency": Saliency,
}


class FrameModel(nn.Module):
    """Featurizer + head as one function of batch-first frames: ``(batch, layers, time, dim), lengths
    -> logits (batch, classes)`` (Captum attributes with respect to the first argument and repeats the
    others, the lengths, along its expanded batch)."""

    def __init__(self, featurizer: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.featurizer, self.head = featurizer, head

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.featurizer(frames.transpose(0, 1)), lengths)


class AudioModel(nn.Module):
    """Backbone + featurizer + head: ``(wavs (batch, samples), lengths) -> logits``."""

    def __init__(self, backbone: nn.Module, featurizer: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.featurizer, self.head = backbone, featurizer, head

    def forward(self, wavs: Tensor, lengths: Tensor) -> Tensor:
        hidden, frame_lengths = self.backbone(wavs, lengths)
        return self.head(self.featurizer(self.featurizer.select(hidden)), frame_lengths)


def predicted(model: Callable, x: Tensor, lengths: Tensor) -> Tensor:
    """The class each clip is explained for when none is chosen: the model's own answer."""
    with torch.no_grad():
        return model(x, lengths).argmax(-1)


def frame_attributions(
    model: FrameModel,
    frames: Tensor,
    lengths: Tensor,
    target: Tensor | None = None,
    method: str = "integrated_gradients",
    n_steps: int = 32,
) -> Tensor:
    """frames: (batch, layers, time, dim) -> attribution per frame (batch, time), 0 on padding.
    ``target``: (batch,) class per clip; None -> the predicted class."""
    if method not in METHODS:
        raise ValueError(f"attribution method {method!r} is not one of {sorted(METHODS)}")
    model.eval()
    target = predicted(model, frames, lengths) if target is None else target
    explainer = METHODS[method](model)
    kwargs = (
        {"n_steps": n_steps, "internal_batch_size": frames.shape[0]}
        if method == "integrated_gradients"
        else {}
    )
    attr = explainer.attribute(
        frames.detach().requires_grad_(), target=target, additional_forward_args=(lengths,), **kwargs
    )
    per_frame = attr.sum(dim=(1, 3))  # over layers and feature dimensions
    return per_frame * lengths_to_mask(lengths, frames.shape[2])


def occlusion_over_time(
    model: Callable, wavs: Tensor, lengths: Tensor, window: int, target: Tensor | None = None
) -> Tensor:
    """wavs: (batch, samples) -> the drop of the target logit when each ``window`` of samples is
    silenced: (batch, windows), 0 for windows past a clip's end."""
    if window < 1:
        raise ValueError(f"occlusion window must be at least 1 sample, got {window}")
    target = predicted(model, wavs, lengths) if target is None else target
    with torch.no_grad():
        attr = Occlusion(model).attribute(
            wavs,
            sliding_window_shapes=(window,),
            strides=(window,),
            baselines=0.0,
            target=target,
            additional_forward_args=(lengths,),
        )
    per_window = attr[:, ::window]  # stride = window: every sample of a window holds that window's drop
    starts = torch.arange(per_window.shape[1], device=wavs.device) * window
    return per_window * (starts[None, :] < lengths[:, None])


def positive_share(attr: Tensor, inside: Tensor) -> Tensor:
    """Share of each clip's positive attribution mass that falls where ``inside`` (bool, same shape)
    is True: (batch,). The padding check of the study: speech vs added silence."""
    pos = attr.clamp(min=0)
    total = pos.sum(-1)
    return torch.where(total > 0, (pos * inside).sum(-1) / total.clamp(min=1e-12), torch.zeros_like(total))
