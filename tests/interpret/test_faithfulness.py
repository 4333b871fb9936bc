import json

import torch

from asr_transfer.interpret.attribute import frame_attributions
from asr_transfer.interpret.faithfulness import beats_random, deletion_curve, top_frames, write_faithfulness
from tests.interpret.synthetic import window_task


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
