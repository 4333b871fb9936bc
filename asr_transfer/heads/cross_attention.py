"""Whisper's cross-attention with the projections moved to the token side, for teacher-forced training.

A decoder trained from stored encoder states spends its step on cross-attention's keys and values: every layer
projects every one of the 1500 frames of a 30 s window through ``k_proj`` and ``v_proj`` (16 clips x 1500 x 384 x
384 x 2 multiply-adds a layer for tiny) and, when they train, back for their weight gradients, while the
transcript has a dozen tokens. Per head ``h``, with ``S`` the encoder states and ``q`` the scaled queries,

    q K^T = q (S W_k,h^T)^T = (q W_k,h) S^T          A V = A (S W_v,h^T + b_v,h) = (A S) W_v,h^T + (A 1) b_v,h

so the same attention costs ``2 x heads x tokens x frames x d_model`` instead of ``2 x frames x d_model^2``: less
whenever ``tokens x (heads - 1) < d_model`` (fewer than 76 tokens for tiny, 102 for base). Exact up to float
rounding (``tests/heads/test_cross_attention.py``). A ``k_proj`` bias, had Whisper one, would add the same
number to every frame's score and leave the softmax unchanged.

Everything else takes transformers' own path: generation with a cache (keys and values are projected once per
clip there), attention weights asked for, long transcripts, and ``k_proj``/``v_proj`` that are no longer plain
``nn.Linear`` (LoRA wraps them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers.models.whisper.modeling_whisper import WhisperAttention


class TokenSideCrossAttention(WhisperAttention):
    """``WhisperAttention`` (same parameters, same state-dict keys) with the token-side path above."""

    @classmethod
    def replacing(cls, attention: WhisperAttention) -> TokenSideCrossAttention:
        """A module with ``attention``'s settings and its parameters (the same tensors, meta ones too)."""
        new = cls(attention.embed_dim, attention.num_heads, attention.dropout, is_decoder=attention.is_decoder,
                  bias=attention.v_proj.bias is not None, is_causal=attention.is_causal,
                  layer_idx=attention.layer_idx, config=attention.config)  # fmt: skip
        new.load_state_dict(attention.state_dict(), assign=True)
        return new

    def token_side(
        self, hidden_states: Tensor, key_value_states: Tensor | None, cache, output_attentions
    ) -> bool:
        """Whether this call takes the token-side path (see the module's docstring)."""
        return (
            key_value_states is not None
            and cache is None
            and not output_attentions
            and type(self.k_proj) is nn.Linear
            and type(self.v_proj) is nn.Linear
            and hidden_states.shape[1] * (self.num_heads - 1) < self.embed_dim
        )

    def forward(
        self,
        hidden_states: Tensor,
        key_value_states: Tensor | None = None,
        cache=None,
        attention_mask: Tensor | None = None,
        output_attentions: bool = False,
        **kwargs,
    ):
        if not self.token_side(hidden_states, key_value_states, cache, output_attentions):
            return super().forward(
                hidden_states,
                key_value_states=key_value_states,
                cache=cache,
                attention_mask=attention_mask,
                output_attentions=output_attentions,
                **kwargs,
            )
        b, t, _ = hidden_states.shape
        h, dh = self.num_heads, self.head_dim
        q = (self.q_proj(hidden_states) * self.scaling).view(b, t, h, dh)
        # (b, heads x tokens, d_model): every head's queries taken back through its slice of W_k
        qk = torch.einsum("bthe,hec->bhtc", q, self.k_proj.weight.view(h, dh, -1)).reshape(b, h * t, -1)
        states = key_value_states.to(qk.dtype)
        scores = torch.bmm(qk, states.transpose(1, 2)).view(b, h, t, -1)
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = nn.functional.dropout(scores.softmax(-1), p=self.dropout, training=self.training)
        mixed = torch.bmm(weights.reshape(b, h * t, -1), states).view(b, h, t, -1)  # A S
        out = torch.einsum("bhtc,hec->bthe", mixed, self.v_proj.weight.view(h, dh, -1))
        if self.v_proj.bias is not None:  # (A 1) b_v: the rows' sums, 1 unless dropout hit them
            out = out + weights.sum(-1).transpose(1, 2)[..., None] * self.v_proj.bias.view(h, dh)
        return self.out_proj(out.reshape(b, t, -1)), None


def token_side_cross_attention(model: nn.Module) -> None:
    """Builds each decoder layer's cross-attention of a ``WhisperForConditionalGeneration`` being constructed
    (``whisper_decoder._load_decoder``) as ``TokenSideCrossAttention``: the same parameters."""
    for layer in model.model.decoder.layers:
        layer.encoder_attn = TokenSideCrossAttention.replacing(layer.encoder_attn)
