import json

import pytest
import torch

from asr_transfer.interpret.attribute import frame_attributions
from asr_transfer.interpret.faithfulness import (
    beats_random,
    deletion_curve,
    drop_frames,
    drop_ratio,
    expand_steps,
    top_frames,
    write_faithfulness,
)
from tests.interpret.synthetic import WINDOW, window_task


def test_top_frames_takes_the_share_of_each_clips_valid_frames():
    scores = torch.tensor([[5.0, 1.0, 4.0, 3.0], [1.0, 2.0, 9.0, 9.0]])
    drop = top_frames(scores, torch.tensor([4, 2]), 0.5)
    assert drop.tolist() == [[True, False, True, False], [False, True, False, False]]


def test_deletion_curve_is_monotone_and_beats_random_for_the_window_task(tmp_path):
    model, x, lengths, labels = window_task(n=60)
    attr = frame_attributions(model, x, lengths)
    result = deletion_curve(model, x, lengths, labels, attr, time_dim=2, shares=[0, 0.1, 0.2, 0.3, 0.5])
    curve = result["attribution"]
    assert curve[0] == 1.0
    assert all(b <= a for a, b in zip(curve, curve[1:])), curve
    assert curve[2] < 0.5  # the whole window (20 % of the frames) is gone
    assert result["random"][2] > 0.9  # a random 20 % leaves most of the window
    assert beats_random(result, 0.2, factor=3)
    write_faithfulness(tmp_path, result)
    saved = json.loads((tmp_path / "faithfulness.json").read_text())
    assert saved["metric"] == "acc" and saved["shares"] == [0.0, 0.1, 0.2, 0.3, 0.5]
    assert (tmp_path / "faithfulness.png").read_bytes()[:4] == b"\x89PNG"


def test_drop_frames_closes_up_the_kept_frames_and_shrinks_the_lengths():
    x = torch.arange(1.0, 9.0).reshape(2, 4)[:, None, :, None]  # (batch 2, layers 1, time 4, dim 1)
    drop = torch.tensor([[False, True, False, False], [True, False, False, False]])
    kept, lengths = drop_frames(x, drop, torch.tensor([4, 3]), time_dim=2)
    assert lengths.tolist() == [3, 2]
    assert kept[:, 0, :, 0].tolist() == [[1.0, 3.0, 4.0, 0.0], [6.0, 7.0, 0.0, 0.0]]


def test_masked_deletion_is_what_the_pooling_sees_without_those_frames():
    model, x, lengths, labels = window_task(n=6)
    drop = torch.zeros(6, 50, dtype=torch.bool)
    drop[:, WINDOW] = True
    kept, kept_lengths = drop_frames(x, drop, lengths, time_dim=2)
    outside = torch.cat([x[:, :, : WINDOW.start], x[:, :, WINDOW.stop :]], dim=2)
    expected = model(outside, torch.full((6,), 40))
    assert kept_lengths.tolist() == [40] * 6
    assert torch.allclose(model(kept, kept_lengths), expected, atol=1e-6)


def test_zeroing_shifts_a_biased_head_where_masking_does_not():
    """Zeroed frames still count in the mean pool and pull it towards 0, where this head's bias favours
    class 0: random zeroing alone costs accuracy, random masking keeps the window's share of the mean."""
    model, x, lengths, labels = window_task(n=30)
    with torch.no_grad():
        model.head.linear.bias[0] = 0.4  # the window adds 3 * 10 / 50 = 0.6 to its class's mean
    attr = frame_attributions(model, x, lengths)
    zero = deletion_curve(model, x, lengths, labels, attr, 2, shares=[0, 0.6], mode="zero")
    mask = deletion_curve(model, x, lengths, labels, attr, 2, shares=[0, 0.6], mode="mask")
    assert zero["random"][0] == mask["random"][0] == 1.0
    assert mask["random"][1] > 0.9
    assert zero["random"][1] < 0.6  # most clips of classes 1 and 2 fall to class 0
    assert mask["attribution"][1] < 0.5  # the window is gone either way


def test_audio_steps_delete_whole_windows_of_samples():
    drop = torch.tensor([[False, True, False]])
    assert expand_steps(drop, 4, 10).tolist() == [[False] * 4 + [True] * 4 + [False] * 2]


def test_drop_ratio_and_an_unknown_mode():
    result = {"shares": [0.0, 0.2], "attribution": [0.9, 0.3], "random": [0.9, 0.7]}
    assert drop_ratio(result, 0.2) == pytest.approx(3.0)
    assert drop_ratio({**result, "random": [0.9, 0.9]}, 0.2) == float("inf")
    with pytest.raises(ValueError, match="deletion mode 'blank'"):
        deletion_curve(
            None, torch.zeros(1, 4), torch.tensor([4]), torch.tensor([0]), torch.zeros(1, 4), 1, mode="blank"
        )
