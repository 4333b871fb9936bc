"""featurizer=concat: sizes, layer order, and the head it gets from a composed config."""

from __future__ import annotations

import torch

from asr_transfer.featurizers import Concat
from asr_transfer.pipeline.build import build_backbone
from tests.conftest import TINY_WHISPER, compose_train, task_for


def test_concat_sizes_and_order():
    f = Concat(num_layers=3, hidden_size=4)
    assert f.output_size == 12 and f.layers == [0, 1, 2]
    stack = torch.arange(3 * 2 * 4, dtype=torch.float32).view(3, 2, 4)  # (layers, batch, dim)
    out = f(stack)
    assert out.shape == (2, 12)
    assert torch.equal(out[1, 4:8], stack[1, 1])  # layer 1 of clip 1 sits in the second block
    frames = torch.randn(3, 2, 5, 4)  # (layers, batch, time, dim)
    assert f(frames).shape == (2, 5, 12)
    # pooled-then-concatenated == concatenated-then-pooled (the cache stores pooled vectors)
    assert torch.allclose(f(frames.mean(2)), f(frames).mean(1), atol=1e-6)


def test_concat_config_builds_a_head_of_num_layers_times_hidden(tmp_path):
    cfg = compose_train([*TINY_WHISPER, "featurizer=concat", "data=manifest"], tmp_path)
    backbone = build_backbone(cfg)
    task = task_for(cfg, backbone, num_classes=3, labels=["a", "b", "c"])
    assert backbone.num_layers == 3 and backbone.hidden_size == 32  # the tiny Whisper: 2 layers + input
    assert task.head.linear.in_features == 3 * 32
