"""CTC loss guards: frames needed, too-short clips skipped (not NaN), float32 under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asr_transfer.heads.frames import CTCLinearHead
from asr_transfer.tasks.ctc import ctc_frames_needed, ctc_loss_fp32


# ----- loss -----------------------------------------------------------------------------------------
def test_frames_needed_counts_blanks_between_repeats():
    targets = torch.tensor([[1, 1, 2, 2], [3, 0, 0, 0], [4, 4, 4, 0]])
    lengths = torch.tensor([4, 1, 3])
    assert ctc_frames_needed(targets, lengths).tolist() == [6, 1, 5]


def test_too_short_and_empty_clips_are_skipped_not_nan():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    targets = torch.tensor([[1, 2, 3], [1, 1, 1], [2, 0, 0]])
    target_lengths = torch.tensor([3, 3, 1])
    frame_lengths = torch.tensor([6, 4, 0])  # clip 1 needs 5 frames, clip 2 has none
    loss, kept = ctc_loss_fp32(logits, frame_lengths, targets, target_lengths)
    assert kept.tolist() == [True, False, False]
    ref = F.ctc_loss(
        logits[:1].log_softmax(-1).transpose(0, 1), targets[:1], frame_lengths[:1], target_lengths[:1]
    )
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-6)
    none, kept = ctc_loss_fp32(logits[1:], frame_lengths[1:], targets[1:], target_lengths[1:])
    assert none is None and not kept.any()


def test_ctc_loss_finite_and_float32_under_bf16_autocast():
    torch.manual_seed(0)
    head = CTCLinearHead(16, 12, dropout=0.0)
    frames = torch.randn(4, 50, 16) * 30  # large logits: where half-precision log-softmax/CTC break
    lengths = torch.tensor([50, 40, 30, 20])
    targets = torch.randint(1, 12, (4, 10))
    target_lengths = torch.tensor([10, 8, 6, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(frames, lengths)
        assert logits.dtype == torch.bfloat16
        loss, _ = ctc_loss_fp32(logits, lengths, targets, target_lengths)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref, _ = ctc_loss_fp32(logits.float(), lengths, targets, target_lengths)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)  # same numbers as float32 on the bf16 logits
