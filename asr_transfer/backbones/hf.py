"""Any Hugging Face wav2vec2-family speech encoder: Wav2Vec2, HuBERT, WavLM, Data2VecAudio.

Loaded with ``AutoConfig``/``AutoModel`` from a hub id or a local ``save_pretrained`` folder
(``backbone.name_or_path``); a local path never touches the network.

Attention masks follow Hugging Face's rule for this family:
  * ``feat_extract_norm == "layer"`` (wav2vec2-large-lv60, XLS-R, HuBERT-large, WavLM-large,
    Data2VecAudio): an ``attention_mask`` built from the lengths is passed, and a clip gives the
    same features alone or padded inside a batch.
  * ``feat_extract_norm == "group"`` (wav2vec2-base, HuBERT-base, WavLM-base): *no* mask. These
    checkpoints were trained and fine-tuned on zero-padded batches without one (their feature
    extractors set ``return_attention_mask=False``) and HF documents that passing one degrades
    batched results. Their GroupNorm also sees the padding, so the output depends on the batch
    anyway (transformers #21534): batch them by near-equal length.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from asr_transfer.backbones.base import Backbone
from asr_transfer.utils.hub import load_pretrained, resolve_pretrained
from asr_transfer.utils.masks import lengths_to_mask

log = logging.getLogger(__name__)

# Adapter targets inside one wav2vec2-family layer (torchaudio's modules carry the same names).
WAV2VEC2_ADAPTER_TARGETS = {
    "lora": (
        "attention.q_proj",
        "attention.k_proj",
        "attention.v_proj",
        "attention.out_proj",
        "feed_forward.intermediate_dense",
        "feed_forward.output_dense",
    ),
    "bottleneck": ("attention", "feed_forward"),
}


class HFBackbone(Backbone):
    """A ``transformers`` wav2vec2-family encoder, pretrained or randomly initialised.

    Hidden states (``num_layers = num_hidden_layers + 1``, each (batch, frames, hidden_size)):
    HF's ``hidden_states`` (the input to the first layer, then each layer's output), except that
    the last one is ``last_hidden_state``: for stable-layer-norm (pre-LN) models it includes the
    final layer norm, which transformers 5.x no longer applies to ``hidden_states[-1]``.

    ``pretrained=False`` builds the same architecture with random weights; with ``model_type``
    (e.g. ``"wav2vec2"``) the config is built from ``config_overrides`` alone, no files needed.
    SpecAugment masking is off (``mask_time_prob=0``) and LayerDrop is 0 unless ``layer_drop``
    is given; ``config_overrides`` can turn masking back on.
    """

    adapter_targets = WAV2VEC2_ADAPTER_TARGETS

    @classmethod
    def input_rate(
        cls,
        name_or_path: str,
        pretrained: bool = True,
        model_type: str | None = None,
        trust_remote_code=False,
        **_,
    ) -> int:
        """The feature extractor's rate, read from its config alone (no weights)."""
        return _preprocessing(name_or_path, pretrained, model_type, {"trust_remote_code": trust_remote_code})[
            0
        ]

    def __init__(
        self,
        name_or_path: str,
        pretrained: bool = True,
        config_overrides: dict | None = None,
        model_type: str | None = None,
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        **settings,
    ) -> None:
        super().__init__(**settings)
        from transformers import AutoConfig

        self.name_or_path = name_or_path
        self.pretrained = pretrained
        # Masking would add an unused ``masked_spec_embed`` parameter (DDP complains) and noise.
        overrides = {"mask_time_prob": 0.0, "mask_feature_prob": 0.0, "apply_spec_augment": False}
        overrides.update(config_overrides or {})
        # Layers are summed downstream: a dropped layer would shift which state is which.
        overrides["layerdrop"] = float(self.layer_drop or 0.0)
        remote = {"trust_remote_code": trust_remote_code}
        if not pretrained and model_type is not None:
            config = AutoConfig.for_model(model_type, **overrides)
        else:
            config = load_pretrained(
                lambda p: AutoConfig.from_pretrained(p, **overrides, **remote), name_or_path
            )
        if config.model_type == "whisper":
            raise ValueError(
                f"backbone.name_or_path={name_or_path!r} is a Whisper model: use backbone=whisper "
                "(WhisperEncoderBackbone runs its encoder on the real clip length)"
            )
        self.model = self._build(config, pretrained, attn_implementation, remote)
        self.config = self.model.config
        # Group-norm feature encoders were trained without masks (see the module docstring).
        self.use_attention_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        self.sample_rate, self.normalize_waveform = _preprocessing(
            name_or_path, pretrained, model_type, remote
        )  # the same reading as input_rate
        self.num_layers = config.num_hidden_layers + 1
        self.hidden_size = config.hidden_size
        self.downsample_rate = math.prod(config.conv_stride)
        self._ran: list[int] = []
        if self.layer_drop:  # HF skips layers silently; record which ran to keep the state count fixed
            for i, layer in enumerate(self.model.encoder.layers):
                layer.register_forward_hook(lambda m, a, o, i=i: self._ran.append(i))
        self.apply_freeze()
        cnn = self.model.feature_extractor
        if not any(p.requires_grad for p in cnn.parameters()):
            # Otherwise HF's CNN makes its input require grad in training (for gradient
            # checkpointing) and every backward pass runs through the frozen CNN.
            cnn._requires_grad = False

    def _build(self, config, pretrained: bool, attn_implementation: str, remote: dict) -> nn.Module:
        """AutoModel with ``attn_implementation``, falling back to eager where it is unsupported (WavLM)."""
        from transformers import AutoModel

        def make(impl: str) -> nn.Module:
            if pretrained:
                return load_pretrained(
                    lambda p: AutoModel.from_pretrained(p, config=config, attn_implementation=impl, **remote),
                    self.name_or_path,
                )
            return AutoModel.from_config(config, attn_implementation=impl, **remote)

        try:
            return make(attn_implementation)
        except ValueError as e:  # "X does not support an attention implementation through ..."
            if attn_implementation == "eager" or "attention implementation" not in str(e):
                raise
            log.info("%s: %s; using eager attention", self.name_or_path, str(e).splitlines()[0])
            return make("eager")

    def identity(self) -> str:
        return f"hf:{self.name_or_path}:pretrained={self.pretrained}"

    def feature_encoder_modules(self) -> list[nn.Module]:
        # wav2vec2 fine-tuning recipe: only the CNN is frozen; feature_projection keeps training.
        return [self.model.feature_extractor]

    def transformer_layers(self) -> list[nn.Module]:
        return list(self.model.encoder.layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        # The CNN formula of ``_get_feat_extract_output_lengths``, without the adapter downsampling
        # that wav2vec2's version adds (hidden states are taken before any adapter; HuBERT's
        # version has no ``add_adapter`` argument at all).
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def _forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs: (batch, samples); lengths: (batch,) -> num_layers x (batch, frames, D), (batch,)."""
        mask = lengths_to_mask(lengths, wavs.shape[-1]).long() if self.use_attention_mask else None
        self._ran.clear()
        out = self.model(
            wavs.to(self.model.dtype), attention_mask=mask, output_hidden_states=True, return_dict=True
        )
        hidden = list(out.hidden_states)
        if len(hidden) != self.num_layers:  # layer_drop skipped layers: repeat the state they passed on
            ran = iter(hidden[1:])
            hidden = hidden[:1]
            for i in range(self.num_layers - 1):
                hidden.append(next(ran) if i in self._ran else hidden[-1])
        if getattr(self.model, "adapter", None) is None:
            hidden[-1] = out.last_hidden_state
        return hidden, self.frame_lengths(lengths).clamp(max=hidden[0].shape[1])


def _preprocessing(
    name_or_path: str, pretrained: bool, model_type: str | None, remote: dict
) -> tuple[int, bool]:
    """(sampling_rate, do_normalize) from the checkpoint's feature extractor; (16000, True) if none.

    A local folder is only read when it has preprocessor_config.json; a hub id is tried and a
    failure (offline, no such file) falls back to the defaults.
    """
    if not pretrained and model_type is not None:
        return 16000, True
    path = resolve_pretrained(name_or_path)
    if Path(path).is_dir() and not (Path(path) / "preprocessor_config.json").exists():
        return 16000, True
    try:
        from transformers import AutoFeatureExtractor

        fe = AutoFeatureExtractor.from_pretrained(path, **remote)
    except (OSError, ValueError) as e:
        log.warning("%s: no feature extractor config (%s); assuming 16 kHz, normalised input", path, e)
        return 16000, True
    return int(getattr(fe, "sampling_rate", 16000)), bool(getattr(fe, "do_normalize", True))
