"""One plan per run: each part built once, and requests the plan cannot honour refused in one line."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from asr_transfer.checkpoint_io import CheckpointError, load_checkpoint
from asr_transfer.data.augment import WaveformAugment
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.data.noise import write_coloured
from asr_transfer.data.targets import LabelTargets
from asr_transfer.featurizers import Featurizer
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.plan import PlanError, ignored_or_exit, make_plan
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, predict_rows, run_python, tone_overrides


@pytest.fixture
def constructions(monkeypatch) -> Counter:
    """Counts, per kind: datamodules, featurizers and waveform chains built, datamodule setups that did
    work (a second one would read the manifests again), label fits."""
    counts: Counter = Counter()

    def counting(cls, name, key):
        real = getattr(cls, name)

        def wrapper(self, *a, **k):
            if key != "setup" or not self._ready:
                counts[key] += 1
            return real(self, *a, **k)

        monkeypatch.setattr(cls, name, wrapper)

    counting(AudioDataModule, "__init__", "datamodule")
    counting(AudioDataModule, "setup", "setup")
    counting(Featurizer, "__init__", "featurizer")
    counting(WaveformAugment, "__init__", "augment")
    counting(LabelTargets, "fit", "targets.fit")
    return counts


def test_each_part_is_built_once_per_run(tmp_path, tone_corpus, constructions):
    """A stored probe, a waveform-augmented minibatch run, eval and predict of the probe's checkpoint."""
    base = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "head=linear"]
    # the exact probe on stored pooled features
    probe_dir = tmp_path / "probe"
    train(compose_train(base, probe_dir))
    assert constructions == {"datamodule": 1, "setup": 1, "featurizer": 1, "targets.fit": 1}
    metrics = json.loads((probe_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 0.0 and "probe/l2" in metrics  # it was the probe
    # waveform augmentation: training reads audio, val/test are stored; one chain, built once
    constructions.clear()
    noise = tmp_path / "noise"
    write_coloured(noise, seconds=1.0, sample_rate=16000, per_colour=1)
    aug = [*base, "probe=none", "trainer.max_epochs=1", "augment=noise", f"augment.noise_dir={noise}"]
    train(compose_train(aug, tmp_path / "aug"))
    assert constructions == {"datamodule": 1, "setup": 1, "featurizer": 1, "targets.fit": 1, "augment": 1}
    # eval of the probe's checkpoint: the checkpoint's data, its labels, no augmentation
    ckpt = next((probe_dir / "checkpoints").glob("best-*.ckpt"))
    constructions.clear()
    result = evaluate(compose_train([f"ckpt_path={ckpt}"], tmp_path / "eval", config_name="eval"))
    assert constructions == {"datamodule": 1, "setup": 1, "featurizer": 1, "targets.fit": 1}
    assert result["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    # predict: the datamodule gives the clip rules only (no manifests read, no labels fitted)
    constructions.clear()
    rows = predict_rows(ckpt, tone_corpus["test"].parent / "audio", tmp_path / "p.json")
    assert len(rows) == 48 and constructions == {"datamodule": 1, "featurizer": 1}


def test_the_plan_decides_once_from_the_config(tmp_path, tone_corpus):
    base = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER]
    plan = make_plan(compose_train([*base, "head=linear"], tmp_path / "a"), overrides=[])
    assert plan.fit_with == "probe" and plan.pooled and plan.stored_splits == ("train", "val", "test")
    assert not plan.reads_audio and plan.backbone_trains is None
    frames = make_plan(compose_train([*base, "head=attentive"], tmp_path / "b"), overrides=[])
    assert not frames.pooled and frames.fit_with == "lightning"  # attention pools frames: no probe
    normed = make_plan(compose_train([*base, "featurizer.layer_norm=true"], tmp_path / "c"), overrides=[])
    assert not normed.pooled  # a per-frame layer norm does not commute with the mean
    tuned = make_plan(compose_train([*base, "backbone.freeze=none"], tmp_path / "d"), overrides=[])
    assert tuned.store is None and tuned.reads_audio and tuned.fit_with == "lightning"
    assert tuned.not_stored == "backbone.freeze=none trains the backbone"
    none = make_plan(compose_train([*base, "probe=none"], tmp_path / "e"), overrides=["optimizer.lr=1e-3"])
    assert none.fit_with == "lightning"  # probe=none is a real option: the learning rate is used
    ddp = make_plan(compose_train([*base, "trainer=ddp_cpu"], tmp_path / "f"), overrides=[])
    assert ddp.fit_with == "lightning"  # the probe fits in one process
    test = make_plan(compose_train([*base, "augment=gain"], tmp_path / "g"), "test")
    assert test.waveform_augment is None and test.stored_splits == ("train", "val", "test")


def test_settings_the_probe_ignores_are_refused_naming_the_switch(tmp_path, tone_corpus):
    base = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER]
    cfg = compose_train([*base, "head=mlp", "optimizer.lr=3e-4"], tmp_path / "a")
    with pytest.raises(PlanError, match=r"^optimizer.lr=3e-4: probe=lbfgs .* Fix: add probe=none") as e:
        make_plan(cfg, overrides=["head=mlp", "optimizer.lr=3e-4"])
    assert "\n" not in str(e.value)
    for setting in ("scheduler=step", "trainer.max_epochs=5", "data.batch_size=8", "optimizer=sgd"):
        with pytest.raises(PlanError, match=f"^{setting}: probe=lbfgs"):
            make_plan(compose_train([*base, setting], tmp_path / "b"), overrides=[setting])
    # a checkpoint to resume, set anywhere (command line or preset): the probe has no state to resume
    with pytest.raises(PlanError, match=r"^ckpt_path=last.ckpt: probe=lbfgs .*probe=none"):
        make_plan(compose_train([*base, "ckpt_path=last.ckpt"], tmp_path / "c"), overrides=[])
    # the default is not the user's choice; under a run that trains with the optimizer all are used
    make_plan(compose_train(base, tmp_path / "d"), overrides=[])
    make_plan(compose_train([*base, "head=attentive"], tmp_path / "e"), overrides=["optimizer.lr=1e-3"])


def test_train_py_refuses_in_one_line_before_any_job(tmp_path):
    """As a user types them: the documented example (train.py head=mlp optimizer.lr=3e-4) under the default probe, and a manual sweep over a
    learning rate that the probe never reads (which used to give two identical 'trials')."""
    one = run_python("train.py", "head=mlp", "optimizer.lr=3e-4", f"hydra.run.dir={tmp_path / 'r'}")
    assert one.returncode == 1 and one.stdout == ""
    assert one.stderr.splitlines() == [
        "Error: optimizer.lr=3e-4: probe=lbfgs (the default for a frozen backbone with a pooling head) fits "
        "exactly, without optimizer, scheduler, epochs, batches or a checkpoint to resume, so this would be "
        "ignored. Fix: add probe=none to train with the optimizer, or drop the setting"
    ]
    sweep = run_python(
        "train.py",
        "-m",
        "optimizer.lr=1e-5,1e-1",
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={tmp_path / 's'}",
    )
    assert sweep.returncode == 1 and not (tmp_path / "s").exists()  # no trial ran
    assert sweep.stderr.splitlines() == [
        "Error: this sweep varies optimizer.lr, which probe=lbfgs does not use: every trial would give the "
        "same result. Fix: add probe=none to sweep minibatch training"
    ]
    # a sweep whose varied setting does change the result starts as before
    ignored_or_exit(["-m", "head=linear,mlp", "optimizer.lr=1e-3,1e-2", "probe=none"])
    ignored_or_exit(["-m", "head=linear,mlp"])


def test_probe_none_is_a_config_option():
    proc = run_python("train.py", "probe=none", "--cfg", "job", "--package", "probe")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LBFGSProbe" not in proc.stdout


class Opaque:  # any object outside weights_only's allow-list
    pass


def test_a_checkpoint_weights_only_refuses_is_one_clean_line(tmp_path):
    evil = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "asr_transfer": {"config": {"x": 1}}, "extra": Opaque()}, evil)
    with pytest.raises(CheckpointError, match=r"refuses .* Fix: use a checkpoint written by"):
        load_checkpoint(evil)
    proc = run_python("eval.py", f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'e'}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    # the one form of every user error: Error: <what>, <where>. Fix: <how>
    assert len(lines) == 1 and lines[0].startswith("Error: the checkpoint holds objects that safe loading")
    assert f", ckpt_path={evil}. Fix: use a checkpoint written by" in lines[0]
    assert "UnpicklingError" not in proc.stderr and "Traceback" not in proc.stderr


def test_check_data_reads_the_backbone_rate_without_loading_it(tmp_path, tone_corpus, monkeypatch):
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone
    from asr_transfer.pipeline.check_data import scan

    def refuse(*a, **k):
        raise AssertionError("check_data built the backbone")

    monkeypatch.setattr(WhisperEncoderBackbone, "__init__", refuse)
    cfg = compose_train([*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER], tmp_path / "c")
    problems, counts = scan(cfg)
    assert counts == {"train": 24, "val": 12, "test": 12} and problems == []
