"""Tiny random-weight models of every backbone family (the real architectures, 2 layers of width 32),
written once: the backbone, cache, card, config and pipeline tests all build from these.
"""

from __future__ import annotations

import torch

from asr_transfer.backbones.hf import HFBackbone
from asr_transfer.backbones.scratch import ScratchBackbone
from asr_transfer.backbones.torchaudio import TorchaudioBackbone
from asr_transfer.backbones.whisper import WhisperEncoderBackbone

# The one tiny size every family's preset spells in its own config keys (fast on CPU).
WIDTH, LAYERS, HEADS, FFN = 32, 2, 2, 64

# A tiny random Whisper encoder: the real architecture at the tiny size.
TINY_WHISPER_CONFIG = dict(
    d_model=WIDTH,
    encoder_layers=LAYERS,
    encoder_attention_heads=HEADS,
    encoder_ffn_dim=FFN,
    decoder_layers=1,
    decoder_attention_heads=HEADS,
    decoder_ffn_dim=FFN,
    num_mel_bins=80,
    max_source_positions=1500,
)


def hydra_dict(d: dict) -> str:
    """``{k:v,...}`` in Hydra's override grammar (tuples as lists)."""

    def value(v):
        return "[" + ",".join(value(x) for x in v) + "]" if isinstance(v, (list, tuple)) else str(v)

    return "{" + ",".join(f"{k}:{value(v)}" for k, v in d.items()) + "}"


TINY_WHISPER = [  # the same as command-line overrides
    "backbone.pretrained=false",
    "+backbone.config_overrides=" + hydra_dict(TINY_WHISPER_CONFIG),
]


# Every tiny config sets LayerDrop high: the backbones must force it to 0 (layer count test).
CONV = [(WIDTH, 10, 5)] + [(WIDTH, 3, 2)] * 4 + [(WIDTH, 2, 2)] * 2
TA_TINY = dict(
    extractor_conv_layer_config=CONV,
    encoder_embed_dim=WIDTH,
    encoder_num_layers=LAYERS,
    encoder_num_heads=HEADS,
    encoder_ff_interm_features=FFN,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4,
    encoder_layer_drop=0.9,
)
HF_TINY = dict(
    hidden_size=WIDTH,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=FFN,
    conv_dim=(WIDTH,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    layerdrop=0.9,
)
HF_LAYER_NORM = dict(feat_extract_norm="layer", do_stable_layer_norm=True)
WHISPER_TINY = dict(TINY_WHISPER_CONFIG, encoder_layerdrop=0.9)


def _ta(variant):
    return lambda **kw: TorchaudioBackbone(variant, pretrained=False, config_overrides=TA_TINY, **kw)


def _hf(model_type, **extra):
    overrides = {**HF_TINY, **extra}
    return lambda **kw: HFBackbone(
        model_type, pretrained=False, model_type=model_type, config_overrides=overrides, **kw
    )


BACKBONES = {
    "ta_wav2vec2_base": _ta("wav2vec2_base"),
    "ta_wav2vec2_large_lv60k": _ta("wav2vec2_large_lv60k"),
    "ta_hubert_base": _ta("hubert_base"),
    "ta_wavlm_base_plus": _ta("wavlm_base_plus"),
    "ta_wavlm_large": _ta("wavlm_large"),
    "hf_wav2vec2_group": _hf("wav2vec2"),
    "hf_wav2vec2_layer": _hf("wav2vec2", **HF_LAYER_NORM),
    "hf_hubert": _hf("hubert"),
    "hf_wavlm_layer": _hf("wavlm", **HF_LAYER_NORM),
    # Data2VecAudio reads num_conv_pos_embeddings as the number of stacked positional convs.
    "hf_data2vec_audio": _hf("data2vec-audio", num_conv_pos_embeddings=2),
    "whisper": lambda **kw: WhisperEncoderBackbone(pretrained=False, config_overrides=WHISPER_TINY, **kw),
    "scratch": lambda **kw: ScratchBackbone(hidden_size=WIDTH, num_layers=LAYERS, num_heads=HEADS, **kw),
}


def audio_batch(*seconds: float, sr: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch of sine + noise clips: (batch, samples), lengths (batch,)."""
    g = torch.Generator().manual_seed(0)
    clips = []
    for i, s in enumerate(seconds):
        t = torch.arange(int(s * sr)) / sr
        clips.append(
            0.5 * torch.sin(2 * torch.pi * (220 + 110 * i) * t) + 0.1 * torch.randn(len(t), generator=g)
        )
    lengths = torch.tensor([len(c) for c in clips])
    wavs = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        wavs[i, : len(c)] = c
    return wavs, lengths


# The same presets as command-line overrides, per backbone class (``++``: some configs set the key).
TINY_OVERRIDES = {
    "WhisperEncoderBackbone": [
        "backbone.pretrained=false",
        "++backbone.config_overrides=" + hydra_dict(WHISPER_TINY),
    ],
    "TorchaudioBackbone": ["backbone.pretrained=false", "backbone.config_overrides=" + hydra_dict(TA_TINY)],
    "HFBackbone": [
        "backbone.pretrained=false",
        "backbone.model_type=wav2vec2",
        "backbone.config_overrides=" + hydra_dict(HF_TINY),
    ],
    "ScratchBackbone": [
        f"backbone.hidden_size={WIDTH}",
        f"backbone.num_layers={LAYERS}",
        f"backbone.num_heads={HEADS}",
    ],
}
