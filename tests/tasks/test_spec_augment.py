"""SpecAugment masks: span counts, lengths and fractions as configured; valid frames only; seeded."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.tasks.spec_augment import SpecAugment, span_mask, span_starts


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_span_count_has_the_configured_mean():
    gen = torch.Generator().manual_seed(0)
    # 0.23 * 200 / 10 = 4.6 spans: probabilistic rounding gives 4 or 5, averaging 4.6
    counts = [len(span_starts(200, 0.23, 10, gen)) for _ in range(4000)]
    assert set(counts) == {4, 5}
    assert sum(counts) / len(counts) == pytest.approx(4.6, abs=0.03)


def test_spans_have_the_configured_length_and_stay_in_valid_frames():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([300, 120, 40, 7])
    for _ in range(200):
        mask = span_mask(lengths, 300, 0.05, 10, gen)
        for b, n in enumerate(lengths.tolist()):
            assert not mask[b, n:].any()  # padding never masked
            spans = runs(mask[b, :n])
            # overlapping spans merge into longer runs; a run is never shorter than a span
            assert all(r >= min(10, n) for r in spans)
            assert sum(spans) <= n


def test_masked_fraction_matches_the_probability_when_spans_rarely_overlap():
    gen = torch.Generator().manual_seed(2)
    lengths = torch.full((64,), 1000)
    mask = torch.cat([span_mask(lengths, 1000, 0.05, 10, gen) for _ in range(20)])
    # overlaps of 5 spans in 991 starts cost about 2% of the masked frames
    assert float(mask.float().mean()) == pytest.approx(0.05 * 0.98, abs=0.002)
    isolated = [r for row in mask[:200] for r in runs(row)]
    assert sum(r == 10 for r in isolated) / len(isolated) > 0.9  # most spans exactly mask_length long


def test_forward_masks_time_and_channels_with_configured_rates():
    aug = SpecAugment(mask_time_prob=0.3, mask_time_length=5, mask_feature_prob=0.2, mask_feature_length=16)
    frames = torch.ones(32, 100, 256)
    lengths = torch.randint(50, 101, (32,), generator=torch.Generator().manual_seed(3))
    for step in range(30):
        out = aug(frames, lengths, step)
        for b, n in enumerate(lengths.tolist()):
            assert out[b, n:].eq(1).all()  # padded frames untouched (the head ignores them anyway)
    s = aug.summary()
    assert s["augment/specaugment/batches"] == 30
    # overlap shrinks the union below prob (0.3 -> ~0.26 for 5-frame spans over 50-100 frames)
    assert 0.22 < s["augment/specaugment/time_masked_fraction"] < 0.3
    assert 0.14 < s["augment/specaugment/channel_masked_fraction"] < 0.2


def test_channel_mask_is_the_same_for_every_frame():
    aug = SpecAugment(mask_time_prob=0.0, mask_feature_prob=0.3, mask_feature_length=8)
    out = aug(torch.ones(4, 20, 64), torch.full((4,), 20), step=0)
    assert (out == out[:, :1]).all()  # constant over time
    assert out.eq(0).any()


def test_same_step_same_masks_other_steps_differ():
    a, b = SpecAugment(0.4, 4, 0.2, 8, seed=7), SpecAugment(0.4, 4, 0.2, 8, seed=7)
    x, lengths = torch.randn(8, 60, 32), torch.full((8,), 60)
    torch.manual_seed(0)
    first = a(x, lengths, 11)
    torch.manual_seed(99)  # the global RNG plays no part
    assert torch.equal(first, b(x, lengths, 11))
    assert not torch.equal(first, b(x, lengths, 12))
    assert not torch.equal(first, SpecAugment(0.4, 4, 0.2, 8, seed=8)(x, lengths, 11))


def test_pooled_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="needs frames"):
        SpecAugment()(torch.randn(4, 32), None, 0)


@pytest.mark.parametrize(
    "key,kw",
    [("mask_time_prob", {"mask_time_prob": 1.5}), ("mask_feature_length", {"mask_feature_length": 0})],
)
def test_bad_settings_name_the_key(key, kw):
    with pytest.raises(ValueError, match=f"augment.specaugment.{key}"):
        SpecAugment(**kw)
