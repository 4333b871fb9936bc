"""One conformance test over every backbone (tiny, random, generated audio).

Padding deviations below were measured on these tiny random models (seed 0), so they show which
architectures are exact and which are not, not how large the error is for real checkpoints.
"""

from __future__ import annotations

import pytest
import torch

from asr_transfer.utils.masks import lengths_to_mask
from tests.presets import BACKBONES, audio_batch

# Padding invariance (docs/concepts/backbones.md: "a clip alone and inside a padded batch agree to 1e-5"): the largest
# |difference| over every hidden state and every valid frame of a 0.5 s clip alone vs. the same clip
# zero padded in a batch with a 1 s clip, relative to the largest |value| of that state. Exact
# architectures mask attention and never let a valid frame see padding: float noise only.
PAD_TOL = {
    "ta_wav2vec2_large_lv60k": 1e-5,
    "ta_wavlm_large": 1e-5,
    "hf_wav2vec2_layer": 1e-5,
    "hf_wavlm_layer": 1e-5,
    "whisper": 1e-5,
    "scratch": 1e-5,
}
# Architectures that cannot be exact under zero padding. The test asserts the deviation *exists*, so
# a change that silently altered the padding path is noticed either way.
INEXACT = {
    # GroupNorm over time after the first conv includes the padding (torchaudio #2242).
    "ta_wav2vec2_base": "group norm",
    "ta_hubert_base": "group norm",
    "ta_wavlm_base_plus": "group norm",
    # Same, and by HF's rule no attention mask either (transformers #21534).
    "hf_wav2vec2_group": "group norm, no attention mask",
    "hf_hubert": "group norm, no attention mask",
    # Stacked positional convs: padded frames stop being zero after the first one and leak into
    # the valid frames near the end through the next (HF does not re-mask between them; with a
    # single positional conv the deviation is 2e-7).
    "hf_data2vec_audio": "stacked positional convs",
}
assert set(PAD_TOL) | set(INEXACT) == set(BACKBONES)


def _params(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


@torch.no_grad()
def _padding_deviation(b) -> float:
    wavs, lengths = audio_batch(0.5, 1.0)
    alone, n_alone = b(wavs[:1, : lengths[0]], lengths[:1])
    batch, n_batch = b(wavs, lengths)
    n = int(n_alone[0])
    assert int(n_batch[0]) == n
    return max(float((a[0, :n] - c[0, :n]).abs().max() / a[0, :n].abs().max()) for a, c in zip(alone, batch))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_conformance(name):
    torch.manual_seed(0)
    make = BACKBONES[name]
    b = make().eval()  # freeze=all by default (scratch: none)
    wavs, lengths = audio_batch(0.5, 1.0)

    # Layer count, shapes, frame lengths.
    hidden, frames = b(wavs, lengths)
    assert len(hidden) == b.num_layers
    T = hidden[0].shape[1]
    for h in hidden:
        assert h.shape == (2, T, b.hidden_size)
    assert torch.equal(frames, b.frame_lengths(lengths))
    assert int(frames.max()) == T
    assert abs(T - wavs.shape[-1] / b.downsample_rate) <= 2

    # Layer i is really layer i: no two states are the same tensor.
    for i in range(len(hidden)):
        for j in range(i + 1, len(hidden)):
            assert not torch.allclose(hidden[i], hidden[j]), f"hidden[{i}] == hidden[{j}]"

    # Padding invariance (see PAD_TOL).
    dev = _padding_deviation(b)
    if name in INEXACT:
        assert dev > 1e-3, f"{name}: expected a padding deviation ({INEXACT[name]}), got {dev:.2g}"
    else:
        assert dev < PAD_TOL[name], f"{name}: padding changes the output by {dev:.2g}"

    # LayerDrop is forced off: the count stays fixed in train mode (tiny configs ask for 0.9).
    b_train = make(freeze="none").train()
    for _ in range(3):
        assert len(b_train(wavs, lengths)[0]) == b_train.num_layers

    _check_freeze_policies(make, wavs, lengths)

    # The fingerprint sees every weight.
    before = b.fingerprint()
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    assert b.fingerprint() != before


def _check_freeze_policies(make, wavs, lengths):
    b = make(freeze="all").train()
    assert not any(p.requires_grad for p in b.parameters())
    assert not any(m.training for m in b.modules()), "freeze=all must stay in eval mode under train()"
    hidden, _ = b(wavs, lengths)
    assert all(h.grad_fn is None and not h.requires_grad for h in hidden)

    b = make(freeze="none").train()
    assert all(p.requires_grad for p in b.parameters())
    assert b(wavs, lengths)[0][-1].grad_fn is not None

    b = make(freeze="feature_encoder").train()
    cnn = _params(b.feature_encoder_modules())
    for p in b.parameters():
        assert p.requires_grad == (id(p) not in cnn)
    assert not any(m.training for fe in b.feature_encoder_modules() for m in fe.modules())
    assert all(layer.training for layer in b.transformer_layers())
    # The frozen front end must not even build an autograd graph (HF's CNN forces one unless told).
    seen = []
    first = b.feature_encoder_modules()[0]
    handle = first.register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    assert b(wavs, lengths)[0][-1].grad_fn is not None
    handle.remove()
    assert seen and seen[0].grad_fn is None

    b = make(freeze="top_k", top_k=1).train()
    top = _params(b.transformer_layers()[-1:])
    for p in b.parameters():
        assert p.requires_grad == (id(p) in top)
    hidden, _ = b(wavs, lengths)
    assert hidden[0].grad_fn is None and hidden[-1].grad_fn is not None


@pytest.mark.parametrize("name", ["hf_wav2vec2_layer", "hf_wav2vec2_group"])
def test_hf_attention_mask_reaches_model(name, monkeypatch):
    b = BACKBONES[name]().eval()
    seen = {}
    forward = b.model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    monkeypatch.setattr(b.model, "forward", spy)
    wavs, lengths = audio_batch(0.5, 1.0)
    b(wavs, lengths)
    if name == "hf_wav2vec2_layer":
        assert torch.equal(seen["attention_mask"].bool(), lengths_to_mask(lengths, wavs.shape[-1]))
    else:  # group norm: HF says these were trained without a mask; zero padding only
        assert seen["attention_mask"] is None


@pytest.mark.parametrize("name", ["ta_wav2vec2_base", "ta_wavlm_base_plus"])
def test_torchaudio_masks_reach_every_layer(name):
    b = BACKBONES[name]().eval()
    masks = []
    for layer in b.transformer_layers():
        layer.register_forward_pre_hook(
            lambda m, a, kw: masks.append(a[1] if a[1] is not None else kw.get("key_padding_mask")),
            with_kwargs=True,
        )
    b(*audio_batch(0.5, 1.0))
    assert len(masks) == len(b.transformer_layers()) and all(m is not None for m in masks)


def test_whisper_log_mel_of_equal_length_clips_is_batched_exactly():
    """Clips of equal length share one STFT; each row must equal that clip's own log-mel (its own peak)."""
    backbone = BACKBONES["whisper"]()
    wavs, lengths = audio_batch(0.5, 0.5, 0.3, 0.5)
    wavs[1] *= 0.01  # a quiet clip: its peak normalisation must not be the loud clips'
    mel, frames = backbone.log_mel(wavs, lengths)
    for i in range(len(lengths)):
        alone, n = backbone.log_mel(wavs[i : i + 1, : lengths[i]], lengths[i : i + 1])
        assert int(frames[i]) == int(n[0])
        torch.testing.assert_close(mel[i, :, : int(n[0])], alone[0], atol=1e-6, rtol=0)
        assert not mel[i, :, int(n[0]) :].any()
