"""wav2vec 2.0, HuBERT and WavLM encoders from ``torchaudio.pipelines`` bundles.

The bundle only supplies the architecture (``bundle._params``) and the checkpoint URL; the model
is run layer by layer here so that every hidden state comes back, lengths reach the attention of
every layer (WavLM takes a key-padding mask, the others an additive mask) and LayerDrop cannot
change how many states there are.

Padding: models with a layer-norm feature extractor (wav2vec2_large_lv60k, xlsr_300m,
hubert_large, wavlm_large) give the same valid frames for a clip alone or zero padded inside a
batch. The group-norm ones (wav2vec2_base, wav2vec2_large, hubert_base, wavlm_base*) normalise
each channel over *all* time steps after the first convolution, padding included, so their
output changes under zero padding (torchaudio #2242). That is expected and not fixable without
changing the model: batch such models by near-equal length (``self.group_norm`` says which).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr_transfer.backbones.base import Backbone
from asr_transfer.backbones.hf import WAV2VEC2_ADAPTER_TARGETS
from asr_transfer.utils.masks import lengths_to_mask

# lowercase backbone.variant -> torchaudio.pipelines bundle name
VARIANTS = {
    "wav2vec2_base": "WAV2VEC2_BASE",
    "wav2vec2_large": "WAV2VEC2_LARGE",
    "wav2vec2_large_lv60k": "WAV2VEC2_LARGE_LV60K",
    "wav2vec2_xlsr_300m": "WAV2VEC2_XLSR_300M",
    "hubert_base": "HUBERT_BASE",
    "hubert_large": "HUBERT_LARGE",
    "wavlm_base": "WAVLM_BASE",
    "wavlm_base_plus": "WAVLM_BASE_PLUS",
    "wavlm_large": "WAVLM_LARGE",
}


class TorchaudioBackbone(Backbone):
    """A ``torchaudio.pipelines`` SSL encoder, pretrained or randomly initialised.

    Hidden states (``num_layers = encoder_num_layers + 1``, each (batch, frames, embed_dim)):
      0      the transformer input: feature projection + convolutional positions
             (+ the input layer norm of post-LN base models), what HF returns as hidden_states[0];
      1..L   each transformer layer's output; for pre-LN models (large, XLSR) the last one has the
             encoder's final layer norm applied, i.e. it equals the model's own output.

    ``config_overrides`` updates the bundle's parameter dict (keys of
    ``torchaudio.models.wav2vec2_model`` / ``wavlm_model``), e.g. a tiny random model for tests:
    ``{"encoder_num_layers": 2, "encoder_embed_dim": 32, "extractor_conv_layer_config": [...]}``.
    """

    # WavLM's attention is one nn.MultiheadAttention (attention.attention; peft adapts it whole).
    adapter_targets = {
        "lora": (*WAV2VEC2_ADAPTER_TARGETS["lora"], "attention.attention"),
        "bottleneck": WAV2VEC2_ADAPTER_TARGETS["bottleneck"],
    }

    @classmethod
    def input_rate(cls, variant: str = "wav2vec2_base", **_) -> int:
        """The bundle's rate (no weights read)."""
        import torchaudio.pipelines

        return int(getattr(torchaudio.pipelines, VARIANTS[variant]).sample_rate)

    def __init__(
        self,
        variant: str = "wav2vec2_base",
        pretrained: bool = True,
        config_overrides: dict | None = None,
        **settings,
    ) -> None:
        super().__init__(**settings)
        import torchaudio.pipelines

        if variant not in VARIANTS:
            raise ValueError(f"backbone.variant={variant!r} is not one of {sorted(VARIANTS)}")
        bundle = getattr(torchaudio.pipelines, VARIANTS[variant])
        self.variant = variant
        self.pretrained = pretrained
        params = dict(bundle._params)
        params.update(config_overrides or {})
        # We run the layers ourselves and honour only ``layer_drop`` (default off): a dropped layer
        # would shift which summed state is which.
        params["encoder_layer_drop"] = 0.0
        self.model = _build(bundle._model_type, params)
        if pretrained:
            self.model.load_state_dict(_download_state_dict(bundle, variant))
        self.params = params
        self.is_wavlm = bundle._model_type == "WavLM"
        self.group_norm = params["extractor_mode"] == "group_norm"  # padding changes the output
        # Pre-LN models (large/XLSR) apply the transformer's layer norm after the last layer.
        self.final_layer_norm = bool(params["encoder_layer_norm_first"])
        self.sample_rate = int(bundle.sample_rate)
        # Large/XLSR/WavLM-large were pretrained on normalised audio. (Bundles do it with a
        # layer_norm over the whole padded batch; ours is per clip over valid samples.)
        self.normalize_waveform = bool(bundle._normalize_waveform)
        self.num_layers = params["encoder_num_layers"] + 1
        self.hidden_size = params["encoder_embed_dim"]
        self.downsample_rate = math.prod(s for _, _, s in params["extractor_conv_layer_config"])
        self.apply_freeze()

    def identity(self) -> str:
        return f"torchaudio:{self.variant}:pretrained={self.pretrained}"

    def feature_encoder_modules(self) -> list[nn.Module]:
        # wav2vec2 fine-tuning recipe: only the CNN is frozen; the projection keeps training.
        return [self.model.feature_extractor]

    def transformer_layers(self) -> list[nn.Module]:
        return list(self.model.encoder.transformer.layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        for _, kernel, stride in self.params["extractor_conv_layer_config"]:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def _forward(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs: (batch, samples); lengths: (batch,) -> num_layers x (batch, frames, D), (batch,)."""
        features, frames = self.model.feature_extractor(wavs, lengths)
        # Projection, then padded frames set to 0 so the positional conv sees what the clip alone sees.
        x, attn_mask = self.model.encoder._preprocess(features, frames)
        transformer = self.model.encoder.transformer
        x = transformer._preprocess(x)
        key_padding = None
        if self.is_wavlm:
            # WavLM's attention asserts attention_mask is None and takes a key padding mask instead,
            # additive like its relative position bias (a bool mask triggers a deprecation warning).
            pad = ~lengths_to_mask(frames, x.shape[1])
            attn_mask = None
            key_padding = torch.zeros(pad.shape, dtype=x.dtype, device=x.device).masked_fill(
                pad, float("-inf")
            )
        hidden = [x]
        position_bias = None  # WavLM: relative position bias from layer 0, reused by the rest
        layers = transformer.layers
        for i, layer in enumerate(layers):
            if self.training and self.layer_drop and torch.rand([]) < self.layer_drop:
                hidden.append(x)  # skipped layer: repeat the state so the count stays fixed
                continue
            x, position_bias = layer(x, attn_mask, position_bias=position_bias, key_padding_mask=key_padding)
            last = i == len(layers) - 1
            hidden.append(transformer.layer_norm(x) if last and self.final_layer_norm else x)
        return hidden, frames


def _build(model_type: str, params: dict) -> nn.Module:
    """Same factories the bundles use (``torchaudio.pipelines._wav2vec2.utils._get_model``)."""
    from torchaudio.models import wav2vec2_model, wavlm_model

    factory = {"Wav2Vec2": wav2vec2_model, "WavLM": wavlm_model}[model_type]
    return factory(**params)


def _download_state_dict(bundle, variant: str) -> dict:
    """The bundle's checkpoint via ``torch.hub`` (cached), with an error that says how to work offline.

    Not ``bundle.get_model()``: for normalised models that wraps the encoder in a layer norm over
    the whole padded batch, which would make each clip's features depend on its batch-mates.
    """
    try:
        return bundle._get_state_dict(None)
    except (OSError, RuntimeError) as e:  # URLError/HTTPError are OSErrors; torch.hub raises RuntimeError
        cache = f"{torch.hub.get_dir()}/checkpoints"
        raise OSError(
            f"backbone.variant={variant!r}: could not download the torchaudio checkpoint {bundle._path!r} "
            f"({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}). To work offline, fetch it "
            f'once on a connected machine (python -c "import torchaudio; torchaudio.pipelines.'
            f'{VARIANTS[variant]}.get_model()") and copy {bundle._path.split("/")[-1]} into {cache} '
            "(set TORCH_HOME to move that cache), or use backbone.pretrained=false for random weights."
        ) from e
