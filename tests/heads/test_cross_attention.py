"""The token-side cross-attention (heads/cross_attention.py) equals transformers' WhisperAttention: outputs and
every parameter's gradient, with padded frames masked, and it hands generation and wrapped projections back."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperAttention

from asr_transfer.heads.cross_attention import TokenSideCrossAttention


def _pair(bias: bool = True):
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, decoder_attention_heads=4, encoder_attention_heads=4)
    ref = WhisperAttention(32, 4, is_decoder=True, bias=bias, layer_idx=0, config=config)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
    return ref, TokenSideCrossAttention.replacing(ref)


@pytest.mark.parametrize("masked", [False, True])
def test_token_side_equals_transformers_attention_and_its_gradients(masked):
    ref, fast = _pair()
    fast.load_state_dict(ref.state_dict())  # own copies, so each side's gradients are its own
    x, states = torch.randn(3, 5, 32), torch.randn(3, 40, 32)
    mask = None
    if masked:  # the head's mask for clips shorter than the batch's longest
        keep = torch.arange(40)[None] < torch.tensor([40, 25, 10])[:, None]
        mask = (
            torch.zeros(3, 40)
            .masked_fill(~keep, torch.finfo(torch.float32).min)[:, None, None, :]
            .expand(-1, 1, 5, -1)
        )
    assert fast.token_side(x, states, None, False)
    outs = [m(x, key_value_states=states, attention_mask=mask)[0] for m in (ref, fast)]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for out in outs:
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_long_transcripts_caches_and_wrapped_projections_take_transformers_path():
    _, fast = _pair()
    states = torch.randn(1, 40, 32)
    assert not fast.token_side(torch.randn(1, 11, 32), states, None, False)  # 11 x 3 heads >= 32
    assert not fast.token_side(torch.randn(1, 5, 32), states, object(), False)  # generation's cache
    assert not fast.token_side(torch.randn(1, 5, 32), None, None, False)  # self-attention
    fast.k_proj = nn.Sequential(fast.k_proj)  # as an adapter wraps it
    assert not fast.token_side(torch.randn(1, 5, 32), states, None, False)


def test_replacing_keeps_the_parameters_and_their_names():
    ref, fast = _pair()
    assert list(fast.state_dict()) == list(ref.state_dict())
    for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
        assert a.data_ptr() == b.data_ptr() and isinstance(a, nn.Parameter)
