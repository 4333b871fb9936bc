"""The one interface every pretrained (or scratch) speech encoder implements.

A backbone maps padded waveforms to *all* of its hidden layers plus the valid frame count of
each clip. Everything downstream (featurizers, heads, the feature cache, CTC) only sees this.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

FREEZE_POLICIES = ("all", "none", "feature_encoder", "top_k")


class Backbone(nn.Module, ABC):
    """Base class: subclasses build ``self.model`` and implement ``_forward`` and the layout hooks.

    Attributes every backbone exposes (read by the task to size heads, never retyped in configs):
      sample_rate      input rate in Hz (the datamodule resamples to it)
      num_layers       number of hidden states returned (embedding/CNN output + each transformer layer)
      hidden_size      feature size D of each hidden state
      downsample_rate  input samples per output frame
      normalize_waveform  whether clips are zero-mean/unit-variance normalised before padding

    Freezing (``freeze``):
      all              nothing trains; the backbone runs in eval mode under ``torch.no_grad`` and
                       its outputs can be cached on disk.
      none             everything trains.
      feature_encoder  the convolutional front end is frozen, the transformer trains (wav2vec2 recipe).
      top_k            only the top ``top_k`` transformer layers train.
    """

    sample_rate: int = 16000
    num_layers: int
    hidden_size: int
    downsample_rate: int
    normalize_waveform: bool = True

    def __init__(self, freeze: str = "all", top_k: int = 0, layer_drop: float | None = None) -> None:
        super().__init__()
        if freeze not in FREEZE_POLICIES:
            raise ValueError(f"backbone.freeze={freeze!r} is not one of {list(FREEZE_POLICIES)}")
        if freeze == "top_k" and top_k <= 0:
            raise ValueError("backbone.freeze=top_k needs backbone.top_k >= 1 (how many top layers train)")
        self.freeze = freeze
        self.top_k = int(top_k)
        self.layer_drop = layer_drop

    # ----- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs: (batch, samples) normalised and zero padded; lengths: (batch,) valid samples.

        Returns ``num_layers`` tensors of shape (batch, frames, hidden_size) and frame lengths (batch,).
        """

    @abstractmethod
    def feature_encoder_modules(self) -> list[nn.Module]:
        """Modules before the transformer stack (CNN / conv front end, projections, positions)."""

    @abstractmethod
    def transformer_layers(self) -> list[nn.Module]:
        """The transformer layers, bottom to top."""

    @abstractmethod
    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames for valid input samples."""

    def identity(self) -> str:
        """A string naming these weights (hub id or path, variant); part of the feature-cache key."""
        return type(self).__name__

    # ----- shared behaviour ----------------------------------------------------------------------
    def apply_freeze(self) -> None:
        """Set ``requires_grad`` by the freeze policy. Called by subclasses after building the model."""
        for p in self.parameters():
            p.requires_grad_(self.freeze != "all")
        if self.freeze == "feature_encoder":
            for m in self.feature_encoder_modules():
                m.requires_grad_(False)
        elif self.freeze == "top_k":
            layers = self.transformer_layers()
            if self.top_k > len(layers):
                raise ValueError(
                    f"backbone.top_k={self.top_k} but the backbone has only {len(layers)} layers"
                )
            self.requires_grad_(False)
            for layer in layers[len(layers) - self.top_k :]:
                layer.requires_grad_(True)

    @property
    def fully_frozen(self) -> bool:
        return self.freeze == "all"

    def train(self, mode: bool = True) -> Backbone:
        # Frozen parts stay in eval mode (no dropout, fixed norms) even while the head trains.
        super().train(mode)
        if self.freeze == "all":
            super().train(False)
        elif self.freeze in ("feature_encoder", "top_k"):
            frozen = list(self.feature_encoder_modules())
            if self.freeze == "top_k":
                layers = self.transformer_layers()
                frozen += layers[: len(layers) - self.top_k]
            for m in frozen:
                m.train(False)
        return self

    def normalize(self, wavs: Tensor, lengths: Tensor) -> Tensor:
        """Per-clip zero mean / unit variance over valid samples; padding stays exactly zero.

        Done per clip *before* padding matters (group-norm wav2vec2 otherwise sees the padding).
        Silent clips are left at zero instead of dividing by zero.
        """
        mask = lengths_to_mask(lengths, wavs.shape[-1]).to(wavs.dtype)
        n = lengths.clamp(min=1).to(wavs.dtype)[:, None]
        mean = (wavs * mask).sum(-1, keepdim=True) / n
        var = (((wavs - mean) * mask) ** 2).sum(-1, keepdim=True) / n
        return (wavs - mean) / torch.sqrt(var + 1e-7) * mask

    def forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        if self.normalize_waveform:
            wavs = self.normalize(wavs, lengths)
        if self.fully_frozen:
            with torch.no_grad():
                hidden, frames = self._forward(wavs, lengths)
            return [h.detach() for h in hidden], frames
        return self._forward(wavs, lengths)

    def fingerprint(self) -> str:
        """Hash of identity + every weight: changes whenever the features could change."""
        h = hashlib.sha1(self.identity().encode())
        h.update(str(self.normalize_waveform).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(batch,) lengths -> (batch, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
