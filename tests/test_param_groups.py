"""Learning-rate structure: layer-wise decay per parameter group and the backbone's own warmup."""

from __future__ import annotations

import math

import pytest
import torch

from asr_transfer.pipeline.build import build_backbone
from asr_transfer.schedulers import cosine_with_warmup
from asr_transfer.tasks.param_groups import with_backbone_warmup
from tests.conftest import TINY_WHISPER, compose_train, task_for


def _task(tmp_path, extra=()):
    cfg = compose_train(
        [*TINY_WHISPER, "backbone.freeze=none", "optimizer.lr=0.01", "task.backbone_lr=0.001", "~scheduler", *extra],
        tmp_path,
    )  # fmt: skip
    backbone = build_backbone(cfg)
    return task_for(cfg, backbone, num_classes=3, labels=["a", "b", "c"])


def test_layer_lr_decay_from_the_top_layer_down_feature_encoder_lowest(tmp_path):
    task = _task(tmp_path, ["task.layer_lr_decay=0.5"])
    optimizer = task.configure_optimizers()
    lr = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lr == pytest.approx(
        {
            "head": 0.01,
            "backbone.layer2": 0.001,
            "backbone.layer1": 0.0005,
            "backbone.feature_encoder": 0.00025,
        }
    )
    group_of = {id(p): g["name"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(task.named_parameters())
    assert group_of[id(names["backbone.model.layers.1.fc1.weight"])] == "backbone.layer2"
    assert group_of[id(names["backbone.model.layers.0.self_attn.q_proj.weight"])] == "backbone.layer1"
    for front in ("backbone.model.conv1.weight", "backbone.model.embed_positions.weight"):
        assert group_of[id(names[front])] == "backbone.feature_encoder"
    assert group_of[id(names["head.linear.weight"])] == "head"
    assert set(group_of) == {id(p) for p in task.parameters()}  # every parameter, exactly once


def test_without_decay_one_backbone_group_at_backbone_lr(tmp_path):
    optimizer = _task(tmp_path).configure_optimizers()
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [("head", 0.01), ("backbone", 0.001)]


def test_layer_lr_decay_out_of_range_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"task.layer_lr_decay=1.5"):
        _task(tmp_path, ["task.layer_lr_decay=1.5"]).configure_optimizers()


def test_backbone_warmup_ramps_only_the_backbone_groups():
    head, body = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD(
        [{"params": [head], "name": "head"}, {"params": [body], "name": "backbone", "lr": 0.1}], lr=1.0
    )
    scheduler = with_backbone_warmup(
        optimizer, cosine_with_warmup(optimizer, total_steps=100, warmup_ratio=0.0), 10
    )
    seen = []
    for _ in range(12):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler["scheduler"].step()
    assert scheduler["interval"] == "step"

    cosine = [0.5 * (1 + math.cos(math.pi * s / 100)) for s in range(12)]
    assert [h for h, _ in seen] == pytest.approx(cosine)  # the head keeps its schedule
    assert [b for _, b in seen] == pytest.approx([0.1 * c * min(1.0, s / 10) for s, c in enumerate(cosine)])


def test_backbone_warmup_refuses_an_epoch_scheduler():
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [p], "name": "backbone"}], lr=1.0)
    step_lr = {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 10), "interval": "epoch"}
    with pytest.raises(ValueError, match="task.backbone_warmup_steps"):
        with_backbone_warmup(optimizer, step_lr, 5)
