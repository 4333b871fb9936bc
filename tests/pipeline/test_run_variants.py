"""Run paths the default recipe never takes: early stopping, no val split, long clips skipped, CTC
clips too short for their transcript, a cache the disk cannot hold, and sweeps' table rebuilt by hand."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, run_python, tone, tone_overrides, write_wav


def _over(corpus, tmp_path, *extra) -> list[str]:
    return [
        *tone_overrides(corpus, tmp_path / "cache"),
        *TINY_WHISPER,
        "~logger",
        "~probe",
        *extra,
    ]  # the minibatch path's callbacks


EARLY_STEPS = 4


def test_early_stopping_stops_when_val_stops_improving(tmp_path, tone_corpus):
    """lr 0: val/acc never improves after epoch 0, so patience 1 stops after epoch 1 of 10."""
    out = tmp_path / "run"
    over = _over(tone_corpus, tmp_path, "optimizer.lr=0.0", "task.backbone_lr=0.0", "trainer.max_epochs=10")
    train(compose_train([*over, "callbacks.early_stopping.patience=1"], out))
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == EARLY_STEPS  # 2 steps per epoch (24 clips, batch 16), 10 epochs = 20


def test_run_without_a_val_split_keeps_last_and_tests_it(tmp_path, tone_corpus):
    out = tmp_path / "run"
    result = train(
        compose_train(_over(tone_corpus, tmp_path, "data.val_manifest=null", "trainer.max_epochs=2"), out)
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert result is None and not any(k.startswith("val/") for k in metrics)
    assert {"test/acc", "test/loss", "train/loss"} <= set(metrics)
    # nothing to choose by: the one "best" checkpoint is the last epoch's
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["best-001-4.ckpt", "last.ckpt"], ckpts
    for name in ckpts:
        assert torch.load(out / "checkpoints" / name, weights_only=True)["global_step"] == 2 * 2


def test_long_audio_skip_leaves_out_and_lists_long_clips(tmp_path, tone_corpus):
    """Clips of 0.5 s (k = 2 of each speaker and class: 6 of 24 training clips) exceed max_duration."""
    out = tmp_path / "run"
    over = _over(
        tone_corpus, tmp_path, "data.max_duration=0.45", "data.long_audio=skip", "trainer.max_epochs=1"
    )
    train(compose_train(over, out))
    listed = [json.loads(x) for x in (out / "bad_audio.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in listed} == {"too_long"}
    by_split = {
        s: sorted(r["audio_filepath"].rsplit("/", 1)[-1] for r in listed if r["split"] == s)
        for s in ("train", "val", "test")
    }
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert all("_2.wav" in name for names in by_split.values() for name in names)
    # one epoch of the 18 kept training clips: 2 steps of batch 16
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_ctc_clips_too_short_for_their_transcript_are_counted(tmp_path):
    """Two 0.25 s clips (about 25 frames after the 0.5 s minimum window) carry 60-character transcripts."""
    rows = {"train": [], "val": [], "test": []}
    for split, n in (("train", 8), ("val", 2), ("test", 2)):
        for k in range(n):
            rel = f"audio/{split}_{k}.wav"
            write_wav(tmp_path / rel, tone(0.6, 16000, 300.0 + 200 * (k % 3), k), 16000)
            rows[split].append({"audio_filepath": rel, "text": ["low", "mid", "high"][k % 3]})
    for k in range(2):
        write_wav(tmp_path / f"audio/short_{k}.wav", tone(0.25, 16000, 500.0, k), 16000)
        rows["train"].append({"audio_filepath": f"audio/short_{k}.wav", "text": " ".join(["high"] * 12)})
    manifests = {}
    for split, r in rows.items():
        manifests[split] = tmp_path / f"{split}.jsonl"
        manifests[split].write_text("".join(json.dumps(x) + "\n" for x in r))
    over = [
        *tone_overrides(manifests, tmp_path / "cache"),
        *TINY_WHISPER,
        "~logger",
        "task=ctc",
        "head=ctc_linear",
        "trainer.max_epochs=2",
        "data.batch_size=10",
    ]
    out = tmp_path / "run"
    train(compose_train(over, out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train/too_short"] == 2 * 2  # both clips, in each of the 2 epochs


def test_features_stage_refuses_to_start_when_the_disk_cannot_hold_it(tmp_path, tone_corpus, monkeypatch):
    import shutil

    from asr_transfer.features import stage

    real = shutil.disk_usage
    monkeypatch.setattr(stage.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(
        OSError, match=r"features need about .* GB but .* GB free: set features.dir elsewhere"
    ) as e:
        train(compose_train(_over(tone_corpus, tmp_path, "trainer.max_epochs=1"), tmp_path / "run"))
    assert str(tmp_path / "cache") in str(e.value)
    assert not list((tmp_path / "cache").rglob("*.bin"))  # nothing half written
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_sweeps_module_rebuilds_the_trial_table(tmp_path):
    """``python -m asr_transfer.sweeps DIR METRIC MODE`` ranks job folders from their own files."""
    sweep = tmp_path / "sweep"
    for job, (lr, acc) in enumerate([(0.1, 0.5), (0.01, 0.9), (0.001, None)]):
        d = sweep / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n- data=manifest\n")
        if acc is not None:  # job 2 failed: no metrics.json
            (d / "metrics.json").write_text(json.dumps({"val/acc": acc, "test/acc": acc - 0.1}))
    proc = run_python("-m", "asr_transfer.sweeps", sweep, "val/acc", "max", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(sweep / "trials.csv")
    with open(sweep / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["rank"], r["trial"], r["val/acc"], r["overrides"]) for r in rows] == [
        ("1", "1", "0.9", "optimizer.lr=0.01"),
        ("2", "0", "0.5", "optimizer.lr=0.1"),
        ("3", "2", "", "optimizer.lr=0.001"),
    ]
    empty = run_python("-m", "asr_transfer.sweeps", tmp_path / "none", timeout=120)
    assert empty.returncode == 1 and "no job directories with .hydra/overrides.yaml" in empty.stderr
