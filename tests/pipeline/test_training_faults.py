"""Issue 4: training faults (non-finite losses, kill -9, half-written checkpoints, pickles that run code)
never lose a run's work or run foreign code. Runs use the tiny random Whisper.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_transfer.pipeline.train import train
from tests.conftest import ROOT, TINY_WHISPER, TINY_WHISPER_CONFIG, compose_train


# ----- training faults ---------------------------------------------------------------------------
def test_guard_loss_skips_counts_and_stops():
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone
    from asr_transfer.featurizers import LastLayer
    from asr_transfer.heads import LinearHead
    from asr_transfer.tasks.classification import ClassificationTask

    backbone = WhisperEncoderBackbone(pretrained=False, config_overrides=TINY_WHISPER_CONFIG)
    task = ClassificationTask(
        backbone=backbone,
        featurizer=LastLayer(backbone.num_layers, backbone.hidden_size),
        head=LinearHead,
        optimizer=torch.optim.AdamW,
        num_classes=2,
        max_nonfinite_steps=3,
    )
    nan, one = torch.tensor(float("nan")), torch.tensor(1.0)
    assert task.guard_loss(nan) is None and task.guard_loss(torch.tensor(float("inf"))) is None
    assert task.guard_loss(one) is one and task.nonfinite_in_a_row == 0 and task.nonfinite_total == 2
    task.guard_loss(nan), task.guard_loss(nan)
    with pytest.raises(RuntimeError, match=r"3 non-finite losses in a row \(task.max_nonfinite_steps\)"):
        task.guard_loss(nan)


def _nan_head(monkeypatch, bad_calls):
    from asr_transfer.heads import LinearHead

    forward, calls = LinearHead.forward, {"n": 0}

    def patched(self, *a, **kw):
        out = forward(self, *a, **kw)
        if self.training:
            calls["n"] += 1
            if bad_calls(calls["n"]):
                return out * float("nan")
        return out

    monkeypatch.setattr(LinearHead, "forward", patched)


def test_nonfinite_losses_are_skipped_and_counted(tmp_path, tone_corpus, monkeypatch):
    from tests.conftest import tone_overrides

    _nan_head(monkeypatch, lambda n: n in (2, 3))
    cfg = compose_train(
        [*tone_overrides(tone_corpus, tmp_path / "c"), *TINY_WHISPER, "~probe", "trainer.max_epochs=2"],
        tmp_path / "r",
    )
    train(cfg)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["train/nonfinite_losses"] == 2.0 and np.isfinite(metrics["test/loss"])
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in state["state_dict"].values() if v.is_floating_point())


def test_run_stops_after_too_many_nonfinite_losses_in_a_row(tmp_path, tone_corpus, monkeypatch):
    from tests.conftest import tone_overrides

    _nan_head(monkeypatch, lambda n: True)
    over = [
        *tone_overrides(tone_corpus, tmp_path / "c"),
        *TINY_WHISPER,
        "~probe",  # the minibatch loss guard is what is tested
        "data.batch_size=4",
        "task.max_nonfinite_steps=3",
    ]
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row"):
        train(compose_train(over, tmp_path / "r"))


# ----- atomic checkpoints and kill -9 -------------------------------------------------------------
def test_atomic_checkpoint_io_never_leaves_half_a_file(tmp_path, monkeypatch):
    from asr_transfer.checkpoint_io import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def dying_save(obj, f, *a, **kw):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def _resume_overrides(tone_corpus, tmp: Path) -> list[str]:
    from tests.conftest import tone_overrides

    return [
        *tone_overrides(tone_corpus, tmp / "cache"),
        *TINY_WHISPER,
        "features.mode=off",  # train from audio: the sampler position and RNG matter
        "head=mlp",  # dropout: the RNG state matters
        "data.batch_size=4",  # 24 clips: 6 steps per epoch
        "trainer.max_epochs=3",
        "optimizer.lr=0.01",
        "callbacks.last_every_n_steps.every_n_train_steps=1",
        "~logger",
    ]


@pytest.mark.slow  # three runs, one a subprocess: 95 s measured on the shared 2-core machine
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, tone_corpus):
    over = _resume_overrides(tone_corpus, tmp_path)
    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    args = [*over, f"hydra.run.dir={run}", "+callbacks.throttle._target_=tests.bad_inputs.Throttle"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    step, deadline = 0, time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                step = torch.load(last, weights_only=True)["global_step"]
                if step >= 8:  # epoch 2, batch 2 of 6: mid-epoch
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    killed = torch.load(last, weights_only=True)
    assert 8 <= killed["global_step"] < 18 and killed["global_step"] % 6 != 0, killed["global_step"]
    assert not (run / "metrics.json").exists()

    train(compose_train([*over, f"ckpt_path={last}"], run))  # resume in the same run dir
    train(compose_train(over, tmp_path / "straight"))  # uninterrupted, same seed
    resumed = json.loads((run / "metrics.json").read_text())
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert set(resumed) == set(straight)
    for key, value in straight.items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key
    a = torch.load(last, weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 18
    for k, v in b["state_dict"].items():
        assert torch.allclose(a["state_dict"][k], v, atol=1e-6), k


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_and_caches_load_without_running_code(tmp_path, tone_corpus):
    import pickle

    from asr_transfer.checkpoint_io import CheckpointError, load_checkpoint
    from tests.conftest import tone_overrides

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"asr_transfer": {"config": {"x": _RunsCode(marker)}}}, evil)
    with pytest.raises(
        CheckpointError, match=r"holds objects that safe loading \(weights_only=True\) refuses"
    ) as e:
        load_checkpoint(evil)
    assert "\n" not in str(e.value) and "Fix:" in str(e.value)  # one line, with the way on
    assert isinstance(
        e.value.__context__, pickle.UnpicklingError
    )  # what torch said, kept for HYDRA_FULL_ERROR
    assert not marker.exists()
    # a feature shard replaced by a pickle that would run code: shards are raw numbers read with
    # numpy.frombuffer, never unpickled; its size and checksum no longer match, so it is re-encoded
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "trainer.max_epochs=1"]
    train(compose_train(over, tmp_path / "r1"))
    shard = next((tmp_path / "cache" / "features").rglob("r*.bin"))
    torch.save({"features": _RunsCode(marker)}, shard)
    train(compose_train(over, tmp_path / "r2"))
    assert not marker.exists()
    assert json.loads((tmp_path / "r2" / "metrics.json").read_text()) == json.loads(
        (tmp_path / "r1" / "metrics.json").read_text()
    )
