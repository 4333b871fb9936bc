"""The one interface every pretrained (or scratch) speech encoder implements.

A backbone maps padded waveforms to *all* of its hidden layers plus the valid frame count of
each clip. Everything downstream (featurizers, heads, the feature cache, CTC) only sees this.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from asr_transfer.utils.freeze import check_freeze_policy
from asr_transfer.utils.masks import lengths_to_mask


class Backbone(nn.Module, ABC):
    """Base class: subclasses build ``self.model`` and implement ``_forward`` and the layout hooks.

    Attributes every backbone exposes (read by the task to size heads, never retyped in configs):
      sample_rate      input rate in Hz (the datamodule resamples to it)
      num_layers       number of hidden states returned (embedding/CNN output + each transformer layer)
      hidden_size      feature size D of each hidden state
      downsample_rate  input samples per output frame
      normalize_waveform  whether clips are zero-mean/unit-variance normalised before padding
      min_samples      shortest input it takes: shorter clips are zero-padded to it (400 samples, 25 ms
                       at 16 kHz: the receptive field of a wav2vec2 conv front end, one Whisper window)

    Freezing (``freeze``):
      all              nothing trains; the backbone runs in eval mode under ``torch.no_grad`` and
                       its outputs can be cached on disk.
      none             everything trains.
      feature_encoder  the convolutional front end is frozen, the transformer trains (wav2vec2 recipe).
      top_k            only the top ``top_k`` transformer layers train.

    The settings every backbone shares (``freeze``, ``top_k``, ``layer_drop``, ``adapter``,
    ``unfreeze``) are declared here once: a subclass takes its own arguments and passes
    ``**settings`` on, then reads ``self.layer_drop`` etc.
    """

    sample_rate: int = 16000
    num_layers: int
    hidden_size: int
    downsample_rate: int
    normalize_waveform: bool = True
    min_samples: int = 400

    # Adapter target paths inside one transformer layer, per adapter kind (backbones/adapters.py).
    adapter_targets: dict[str, tuple[str, ...]] = {}

    def __init__(
        self,
        freeze: str = "all",
        top_k: int = 0,
        layer_drop: float | None = None,
        adapter=None,
        unfreeze: list[dict] | None = None,
    ) -> None:
        super().__init__()
        check_freeze_policy(freeze, top_k, "backbone")
        self.freeze = freeze
        self.top_k = int(top_k)
        self.layer_drop = layer_drop
        self.adapter = adapter  # a spec (LoRA, Bottleneck) or None; attached by apply_freeze
        self._adapter_params: set[str] = set()
        self.phases = unfreeze_phases(freeze, top_k, unfreeze)

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

    @classmethod
    def input_rate(cls, **settings) -> int:
        """The sample rate this class with these config settings reads audio at, without building the
        model (``check_data.py`` needs no weights); an instance's ``sample_rate`` equals it."""
        return int(cls.sample_rate)

    def identity(self) -> str:
        """A string naming these weights (hub id or path, variant); part of the feature-cache key."""
        return type(self).__name__

    # ----- shared behaviour ----------------------------------------------------------------------
    def apply_freeze(self) -> None:
        """Attach the adapter (first call only), then set ``requires_grad`` by the freeze policy; adapter
        parameters always train. Called by subclasses after building the model, and at phase switches."""
        if self.adapter is not None and not self._adapter_params:
            # Hold the old parameters while attaching: an adapter that replaces a module frees its
            # parameters, and a new adapter parameter could reuse a freed id (then it would not train).
            kept = list(self.parameters())
            before = {id(p) for p in kept}
            self.adapter.attach(self)
            self._adapter_params = {n for n, p in self.named_parameters() if id(p) not in before}
            del kept
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
        for name, p in self.named_parameters():
            if name in self._adapter_params:
                p.requires_grad_(True)

    @property
    def fully_frozen(self) -> bool:
        """Nothing in the backbone ever trains: its outputs can be stored (see ``not_frozen_reason``)."""
        return self.not_frozen_reason() is None

    def not_frozen_reason(self) -> str | None:
        """Why this backbone's outputs change while training, or None when nothing in it ever trains."""
        return trains_reason(self.freeze, self.adapter, self.phases[1:])

    def set_phase(self, step: int, epoch: int) -> bool:
        """Apply the ``unfreeze`` phase for this point of training; True when it changed the policy."""
        freeze, top_k = phase_at(self.phases, step, epoch)
        if (freeze, top_k) == (self.freeze, self.top_k):
            return False
        self.freeze, self.top_k = freeze, top_k
        self.apply_freeze()
        self.train(self.training)
        return True

    def ever_trainable(self) -> list[nn.Parameter]:
        """Parameters that train in some phase (the optimizer holds these from the start; each gets
        its state at its first gradient, i.e. when its phase unfreezes it)."""
        current, ids, out = (self.freeze, self.top_k), set(), []
        for phase in self.phases:
            self.freeze, self.top_k = phase["freeze"], phase["top_k"]
            self.apply_freeze()
            for p in self.parameters():
                if p.requires_grad and id(p) not in ids:
                    ids.add(id(p))
                    out.append(p)
        self.freeze, self.top_k = current
        self.apply_freeze()
        return out

    def adapter_modules(self) -> list[nn.Module]:
        return [] if self.adapter is None else self.adapter.modules(self)

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
        for m in self.adapter_modules():  # adapters train (their dropout too) inside frozen layers
            m.train(mode)
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


def trains_reason(freeze: str, adapter=None, unfreeze=None) -> str | None:
    """The one rule for "does the backbone ever change while training" (then its outputs cannot be
    stored): why it does, or None when it is fully frozen. ``adapter``: a config node or a built spec;
    ``unfreeze``: the staged-unfreezing entries after the start."""
    if str(freeze) != "all":
        return f"backbone.freeze={freeze} trains the backbone"
    if adapter:
        name = adapter.get("_target_", "adapter") if hasattr(adapter, "get") else type(adapter).__name__
        return f"backbone.adapter={str(name).rsplit('.', 1)[-1]} trains inside the backbone"
    if unfreeze:
        return "backbone.unfreeze (staged unfreezing) trains the backbone"
    return None


def unfreeze_phases(freeze: str, top_k: int, unfreeze: list[dict] | None) -> list[dict]:
    """Staged unfreezing: the constructor's policy from the start, then each ``unfreeze`` entry from
    its ``step`` (optimizer steps) or ``epoch`` on, e.g. ``[{step: 100, freeze: top_k, top_k: 2},
    {step: 300, freeze: none}]``. One unit per schedule; starts strictly increasing."""
    phases = [{"at": 0, "unit": "step", "freeze": freeze, "top_k": int(top_k)}]
    units = set()
    for i, entry in enumerate(unfreeze or []):
        where = f"backbone.unfreeze[{i}]"
        keys = [k for k in ("step", "epoch") if k in entry]
        if len(keys) != 1 or "freeze" not in entry:
            raise ValueError(f"{where}={entry}: give freeze and exactly one of step or epoch")
        check_freeze_policy(entry["freeze"], entry.get("top_k", 0), where)
        units.add(keys[0])
        phase = {"at": int(entry[keys[0]]), "unit": keys[0], "freeze": entry["freeze"]}
        phase["top_k"] = int(entry.get("top_k", 0))
        if len(units) > 1 or phase["at"] <= phases[-1]["at"]:
            raise ValueError(f"{where}={entry}: use one unit (step or epoch) and increasing starts > 0")
        phases.append(phase)
    return phases


def phase_at(phases: list[dict], step: int, epoch: int) -> tuple[str, int]:
    """(freeze, top_k) of the last phase that has started at this optimizer step / epoch."""
    current = phases[0]
    for phase in phases[1:]:
        if (step if phase["unit"] == "step" else epoch) >= phase["at"]:
            current = phase
    return current["freeze"], current["top_k"]
