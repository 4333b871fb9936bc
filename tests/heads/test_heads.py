"""Utterance heads: ``AttentiveHead`` pools an attention-weighted mean and std over valid frames only."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.heads import AttentiveHead


def test_attentive_pooling_is_a_weighted_mean_and_std_over_valid_frames():
    torch.manual_seed(0)
    head = AttentiveHead(4, 3, attention_size=8, dropout=0.0).eval()
    with torch.no_grad():  # constant scores: uniform weights, so the pool is the plain mean and std
        head.attention[-1].weight.zero_()
    frames = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 3])
    pooled = head.pool(frames, lengths)
    for k, n in enumerate(lengths.tolist()):
        valid = frames[k, :n]
        expected = torch.cat([valid.mean(0), valid.std(0, unbiased=False)])
        torch.testing.assert_close(pooled[k], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(head(frames, lengths), head.out(pooled))


def test_attentive_head_ignores_padding_and_weights_frames():
    torch.manual_seed(0)
    head = AttentiveHead(4, 3, attention_size=8, dropout=0.0).eval()
    clip = torch.randn(1, 3, 4)
    padded = torch.cat([clip, 1e3 * torch.randn(1, 5, 4)], dim=1)  # loud padding must not count
    alone = head(clip, torch.tensor([3]))
    torch.testing.assert_close(head(padded, torch.tensor([3])), alone, atol=1e-5, rtol=0)
    # learned scores: frames get different weights, so the pool is no longer the plain mean
    mean = head.pool(clip, torch.tensor([3]))[0, :4]
    assert not torch.allclose(mean, clip[0].mean(0), atol=1e-4)
    with pytest.raises(ValueError, match="head=attentive needs frames"):
        head(clip.mean(1))
