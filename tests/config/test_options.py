"""Every option of every config group composes and instantiates into the class its ``_target_`` names."""

from __future__ import annotations

import pytest
import torch

from tests.config.small import (
    BUILT,
    augment_folders,
    build_all,
    cls_name,
    compose_small,
    data_target,
    options,
)


# ----- (1) every option of every group composes and instantiates --------------------------------------
@pytest.mark.parametrize(("group", "option"), options(), ids=[f"{g}={o}" for g, o in options()])
def test_every_option_composes_and_instantiates(group, option, tmp_path, assets, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # a W&B logger must never reach the network in tests
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    if group == "hydra":
        pytest.skip("hydra/ configures Hydra itself (run dirs, logging): composed by every other case")
    on_trainer = group == "trainer"
    extra = augment_folders(option, tmp_path) if group == "augment" else ()
    cfg = compose_small(f"{group}={option}", tmp_path, assets, extra, cpu=not on_trainer)
    accel = str(cfg.trainer.get("accelerator", "auto"))
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        # still proves it composes; the Trainer itself refuses a GPU setting without a GPU
        pytest.skip(f"{group}={option} sets trainer.accelerator={accel}: needs a CUDA device")
    parts = build_all(cfg)

    if group in BUILT:
        node = cfg[group.split("/")[0]]
        assert type(BUILT[group](parts)).__name__ == cls_name(node._target_), f"{group}={option}"
    if group == "data":
        dm = parts["datamodule"]
        assert {"train", "val", "test"} <= set(dm.datasets)
        field = dm.targets.field
        assert field == (data_target(cfg) or field) and (field == "text" or len(dm.labels) >= 2)
        batch = next(iter(dm.train_dataloader()))
        targets = batch["labels"] if field == "label" else batch["text"]
        assert batch["wavs"].shape[0] == batch["lengths"].shape[0] == len(targets)
    if group == "augment":  # waveform options reach the training data, SpecAugment the task
        waveform = parts["datamodule"].augment
        assert (waveform.names if waveform else ["specaugment"]) == [option]
        assert (parts["task"].spec_augment is not None) == (option == "specaugment")
    if group == "scheduler":
        assert parts["scheduler"]["scheduler"].optimizer is parts["optimizer"]
    if group == "optimizer":
        # defaults, not param_groups: a warmup scheduler has already rescaled those
        assert parts["optimizer"].defaults["lr"] == pytest.approx(cfg.optimizer.lr)
    if group == "callbacks":
        assert len(parts["callbacks"]) == sum(1 for c in (cfg.callbacks or {}).values() if c)
    if group == "logger":
        assert len(parts["loggers"]) == sum(1 for c in (cfg.logger or {}).values() if c)
    if group == "backbone":  # sizes flow from the backbone, never retyped
        bb = parts["backbone"]
        assert bb.num_layers >= 2 and bb.sample_rate == parts["datamodule"].sample_rate
