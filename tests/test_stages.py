"""Staged unfreezing (backbone.unfreeze): the schedule, optimizer state at each unfreeze, exact resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from asr_transfer.backbones.base import phase_at, unfreeze_phases
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides

# 24 training clips, batch 4: 6 steps per epoch, 12 in all. Head only for steps 0-2, the top layer
# from step 3, everything from step 8.
SCHEDULE = "backbone.unfreeze=[{step:3,freeze:top_k,top_k:1},{step:8,freeze:none}]"


class KillAt(L.Callback):
    """Dies after optimizer step ``step`` (before that step's checkpoint, as a SIGKILL would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def test_stage_at_steps_and_epochs():
    phases = unfreeze_phases(
        "all", 0, [{"epoch": 1, "freeze": "top_k", "top_k": 2}, {"epoch": 3, "freeze": "none"}]
    )
    assert [phase_at(phases, 10**6, e) for e in (0, 1, 2, 3)] == [
        ("all", 0),
        ("top_k", 2),
        ("top_k", 2),
        ("none", 0),
    ]
    with pytest.raises(ValueError, match=r"backbone.unfreeze\[1\].*one unit"):
        unfreeze_phases("all", 0, [{"epoch": 1, "freeze": "none"}, {"step": 5, "freeze": "none"}])
    with pytest.raises(ValueError, match=r"backbone.unfreeze\[0\].freeze=top_k needs"):
        unfreeze_phases("all", 0, [{"step": 1, "freeze": "top_k"}])


def _run(tmp_path, corpus, name, extra=()):
    out = tmp_path / name
    cfg = compose_train(
        [*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER, SCHEDULE, "data.batch_size=4",
         "trainer.max_epochs=2", "optimizer.lr=0.01", "task.backbone_lr=0.01", "head=mlp", "test=false",
         "callbacks.last_every_n_steps.every_n_train_steps=1", "~logger", *extra],
        out,
    )  # fmt: skip
    train(cfg)
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def _adam_steps(state: dict, group: str) -> set[int]:
    opt = state["optimizer_states"][0]
    ids = next(g["params"] for g in opt["param_groups"] if g["name"] == group)
    return {int(opt["state"][i]["step"]) if i in opt["state"] else 0 for i in ids}


def test_stage_switch_mid_run_and_its_exact_resume(tmp_path, tone_corpus):
    full = _run(tmp_path, tone_corpus, "full")
    assert full["global_step"] == 12
    # Newly unfrozen parameters got optimizer state from their first step on: the top layer trained
    # steps 3-11, the layer below and the front end steps 8-11, the head all 12.
    assert _adam_steps(full, "head") == {12}
    assert _adam_steps(full, "backbone") == {9, 4}
    assert "backbone.model.conv1.weight" in full["state_dict"]  # everything trained by the end

    kill = ["+callbacks.kill._target_=tests.test_stages.KillAt", "+callbacks.kill.step=6"]
    with pytest.raises(RuntimeError, match="killed"):
        _run(tmp_path, tone_corpus, "killed", kill)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    killed = torch.load(last, weights_only=True)
    assert killed["global_step"] == 5  # mid-epoch, in the middle of the top-layer stage
    assert "backbone.model.layers.1.fc1.weight" in killed["state_dict"]
    # frozen so far, but a later stage trains it: saved, so loading this checkpoint restores it
    assert "backbone.model.layers.0.fc1.weight" in killed["state_dict"]
    resumed = _run(tmp_path, tone_corpus, "killed", [f"ckpt_path={last}"])
    assert resumed["global_step"] == 12
    assert resumed["state_dict"].keys() == full["state_dict"].keys()
    for k, v in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)


def test_staged_unfreezing_refuses_ddp(tmp_path):
    from types import SimpleNamespace

    from asr_transfer.pipeline.build import build_backbone
    from tests.conftest import task_for

    cfg = compose_train([*TINY_WHISPER, SCHEDULE], tmp_path)
    task = task_for(cfg, build_backbone(cfg), num_classes=2, labels=["a", "b"])
    task._trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match=r"backbone.unfreeze \(staged unfreezing\) runs on one device"):
        task.on_fit_start()
    task._trainer = SimpleNamespace(world_size=1)
    task.on_fit_start()  # one device: fine


def test_an_early_stage_checkpoint_restores_the_layers_a_later_stage_trained(tmp_path):
    """The best checkpoint can come from an earlier stage than the last one; testing it after
    training must give the model as saved, not keep the later stage's lower layers (nor stop with
    missing keys, as it did when checkpoints held only the parameters of the stage they were saved in)."""
    from asr_transfer.pipeline.build import build_backbone
    from tests.conftest import task_for

    cfg = compose_train([*TINY_WHISPER, SCHEDULE], tmp_path)
    task = task_for(cfg, build_backbone(cfg), num_classes=2, labels=["a", "b"])
    task.backbone.set_phase(3, 0)  # the top layer trains, everything below is frozen
    checkpoint = {"state_dict": {k: v.clone() for k, v in task.state_dict().items()}}  # as if written
    task.on_save_checkpoint(checkpoint)
    assert not task.backbone.model.layers[0].fc1.weight.requires_grad  # saving left the stage as it was
    saved = checkpoint["state_dict"]["backbone.model.layers.0.fc1.weight"].clone()
    task.backbone.set_phase(8, 0)  # everything trains; move a lower layer as training would
    with torch.no_grad():
        task.backbone.model.layers[0].fc1.weight.add_(1.0)
    task.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(task.backbone.model.layers[0].fc1.weight, saved)
