"""Issue 4: every bad input gets a clear error or is skipped and counted; no run loses its work.

The corpus: real FSDD digits from ../shared (generated tones when absent) with every bad and
odd-but-valid case of tests/bad_inputs.py mixed in. Runs use the tiny random Whisper.
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
import soundfile as sf
import torch

from asr_transfer.data.audio import AudioError
from asr_transfer.pipeline.check_data import check_data, load_report
from asr_transfer.pipeline.train import train
from tests.bad_inputs import bad_cases, odd_cases
from tests.conftest import FSDD_DIR, ROOT, TINY_WHISPER, compose_train, needs_shared, tone, write_wav

SPLIT_SPEAKERS = {"train": ["george", "jackson"], "val": ["nicolas"], "test": ["yweweler"]}
PER_DIGIT = {"train": 2, "val": 1, "test": 2}


def good_rows(tmp: Path) -> dict[str, list[dict]]:
    """FSDD clips per split (speaker-disjoint), or tones with the same shape when ../shared is absent."""
    rows: dict[str, list[dict]] = {}
    rec = FSDD_DIR / "recordings"
    for split, speakers in SPLIT_SPEAKERS.items():
        rows[split] = []
        for spk in speakers:
            for digit in range(10):
                for k in range(PER_DIGIT[split]):
                    path = rec / f"{digit}_{spk}_{k}.wav"
                    if not rec.is_dir():  # fallback: 10 tone classes
                        path = write_wav(
                            tmp / "tones" / path.name, tone(0.4, 8000, 200.0 * (digit + 1), k), 8000
                        )
                    rows[split].append({"audio_filepath": str(path), "label": str(digit), "speaker": spk})
    return rows


def mixed_corpus(tmp: Path) -> dict:
    """Manifests with bad lines (``mixed``) and the same without them (``clean``), plus the expectation."""
    good = good_rows(tmp)
    data = {}
    for split in good:
        src_row = good[split][0]
        source, sr = sf.read(src_row["audio_filepath"], dtype="float32")
        odd = odd_cases(tmp / f"odd_{split}", source, sr) if split != "val" else []
        bad = bad_cases(tmp / f"bad_{split}", source, sr)
        label = src_row["label"]
        odd_rows = [{"audio_filepath": str(c.path), "label": label} for c in odd]
        bad_rows = [{"audio_filepath": str(c.path), "label": label} for c in bad]
        # bad files at the end of the list: the header check must still stop a run in seconds
        data[split] = {
            "clean": good[split] + odd_rows,
            "mixed": good[split] + odd_rows + bad_rows,
            "bad": bad,
        }
    out = {"expected": {}, "odd": {s: len(d["clean"]) - len(good[s]) for s, d in data.items()}}
    for kind in ("clean", "mixed"):
        for split, d in data.items():
            m = tmp / f"{kind}_{split}.jsonl"
            m.write_text("".join(json.dumps(r) + "\n" for r in d[kind]))
            out[(kind, split)] = m
    for split, d in data.items():
        out["expected"].update({(str(c.path), split): c.reason for c in d["bad"]})
    out["first_bad"] = data["train"]["bad"][0]
    out["first_bad_line"] = len(data["train"]["clean"]) + 1
    return out


def overrides(corpus: dict, kind: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "data=manifest",
        *(f"data.{s}_manifest={corpus[(kind, s)]}" for s in ("train", "val", "test")),
        f"paths.cache_dir={tmp / 'cache'}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "data.batch_size=8",
        "data.max_duration=10",  # the 60 s recording is cropped to 10 s
        "trainer.max_epochs=3",
        "optimizer.lr=0.01",
        *TINY_WHISPER,
        *extra,
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return mixed_corpus(tmp_path_factory.mktemp("mixed"))


def test_skip_finishes_lists_bad_files_and_changes_nothing(tmp_path, corpus, caplog):
    ref = compose_train(overrides(corpus, "clean", tmp_path), tmp_path / "clean")
    train(ref)
    cfg = compose_train(overrides(corpus, "mixed", tmp_path, "data.on_bad_audio=skip"), tmp_path / "mixed")
    with caplog.at_level("INFO"):
        train(cfg)
    listed = [json.loads(x) for x in (tmp_path / "mixed" / "bad_audio.jsonl").read_text().splitlines()]
    got = {(r["audio_filepath"], r["split"]): r["reason"] for r in listed}
    assert got == corpus["expected"]  # every bad file, each once, with the right reason; no odd file
    assert len(listed) == len(got)
    assert all(r["manifest"] and r["line"] > 0 for r in listed)
    assert f"skipped audio: {len(got)} files" in caplog.text
    assert "clip(s) shorter than 400 samples" in caplog.text  # short clips: said once per split
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    mixed = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    # the odd files are used, the bad ones change nothing: same model, same metrics
    for key in ("val/acc", "test/acc", "test/f1", "test/loss"):
        assert mixed[key] == pytest.approx(clean[key], abs=1e-5), key


def test_error_stops_in_seconds_naming_the_first_bad_file(tmp_path, corpus):
    cfg = compose_train(overrides(corpus, "mixed", tmp_path), tmp_path / "run")
    t0 = time.perf_counter()
    with pytest.raises(AudioError) as e:
        train(cfg)
    seconds = time.perf_counter() - t0
    first = corpus["first_bad"]
    msg = str(e.value)
    assert e.value.reason == first.reason == "missing"
    assert str(first.path) in msg and "train split" in msg
    assert f"{corpus[('mixed', 'train')]} line {corpus['first_bad_line']}" in msg and "Fix:" in msg
    assert seconds < 30, seconds  # header checks only: no decode, no training step
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_error_on_content_fault_names_file_before_training(tmp_path, corpus):
    """NaN samples pass the header check; the frozen-feature cache decodes before the first step."""
    rows = [json.loads(x) for x in corpus[("clean", "train")].read_text().splitlines()]
    nan = tmp_path / "nan.wav"
    x = np.array(sf.read(rows[0]["audio_filepath"], dtype="float32")[0])
    x[10] = np.nan
    sf.write(str(nan), x, 8000, subtype="FLOAT")
    m = tmp_path / "train.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"audio_filepath": str(nan), "label": "0"}]))
    cfg = compose_train(overrides(corpus, "clean", tmp_path, f"data.train_manifest={m}"), tmp_path / "run")
    with pytest.raises(AudioError) as e:
        train(cfg)
    assert (
        e.value.reason == "non_finite"
        and str(nan) in str(e.value)
        and f"line {len(rows) + 1}" in str(e.value)
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_data_reports_every_problem_at_once(tmp_path, corpus):
    # add manifest faults to the val split: a broken line and a label training never saw
    val = tmp_path / "val.jsonl"
    lines = corpus[("mixed", "val")].read_text().splitlines()
    first = json.loads(lines[0])
    lines += ['{"audio_filepath": "x.wav", "label": ', json.dumps({**first, "label": "eleven"})]
    val.write_text("\n".join(lines) + "\n")
    args = [
        *overrides(corpus, "mixed", tmp_path),
        f"data.val_manifest={val}",
        f"hydra.run.dir={tmp_path / 'check'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "check_data.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = load_report(tmp_path / "check" / "data_check.jsonl")
    errors = {(r["audio_filepath"], r["split"]): r["reason"] for r in report if r["severity"] == "error"}
    for key, reason in corpus["expected"].items():
        assert errors.get(key) == reason, key
    assert any(r["reason"] == "manifest" and r["line"] == len(lines) - 1 for r in report)
    assert any(r["reason"] == "unseen_label" and r["line"] == len(lines) for r in report)
    notes = {(Path(r["audio_filepath"]).name, r["reason"]) for r in report if r["severity"] == "note"}
    assert {("short5ms.wav", "padded"), ("one_sample.wav", "padded"), ("long60s.wav", "cropped")} <= notes
    for reason in set(corpus["expected"].values()):
        assert reason in proc.stdout  # the table of counts per reason
    # the same data with skip: nothing would stop a run (bad files become "skipped")
    cfg = compose_train([*overrides(corpus, "mixed", tmp_path), "data.on_bad_audio=skip"], tmp_path / "c2")
    assert check_data(cfg) == 0
    report = load_report(tmp_path / "c2" / "data_check.jsonl")
    assert {r["severity"] for r in report} == {"skipped", "note"}


# ----- training faults ---------------------------------------------------------------------------
def test_guard_loss_skips_counts_and_stops():
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone
    from asr_transfer.featurizers import LastLayer
    from asr_transfer.heads import LinearHead
    from asr_transfer.tasks.classification import ClassificationTask

    cfg = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=80)
    task = ClassificationTask(
        WhisperEncoderBackbone(pretrained=False, config_overrides=cfg),
        LastLayer,
        LinearHead,
        torch.optim.AdamW,
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
        [*tone_overrides(tone_corpus, tmp_path / "c"), *TINY_WHISPER, "trainer.max_epochs=2"], tmp_path / "r"
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


# ----- config and loading faults ----------------------------------------------------------------
def test_missing_local_model_names_the_key(tmp_path):
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    with pytest.raises(FileNotFoundError, match=r"backbone.name_or_path=.*no such local model directory"):
        WhisperEncoderBackbone(name_or_path=str(tmp_path / "no-such-model"))


def test_unreachable_hub_id_names_the_key_and_offline_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import: set it where it is used
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError) as e:
        WhisperEncoderBackbone(name_or_path="nobody/whisper-does-not-exist")
    msg = str(e.value)
    assert "backbone.name_or_path='nobody/whisper-does-not-exist'" in msg
    assert "HF_HUB_OFFLINE" in msg and "--local-dir" in msg


def test_trust_remote_code_is_never_on_by_default():
    import inspect

    from omegaconf import OmegaConf

    for yaml in (ROOT / "conf" / "backbone").glob("*.yaml"):
        assert OmegaConf.load(yaml).get("trust_remote_code", False) is False, yaml
    from asr_transfer.backbones import hf

    for obj in vars(hf).values():
        if (
            inspect.isclass(obj)
            and obj.__module__ == hf.__name__
            and "trust_remote_code" in inspect.signature(obj).parameters
        ):
            assert inspect.signature(obj).parameters["trust_remote_code"].default is False


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_and_caches_load_without_running_code(tmp_path, tone_corpus):
    import pickle

    from asr_transfer.pipeline.restore import load_checkpoint
    from tests.conftest import tone_overrides

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"asr_transfer": {"config": {"x": _RunsCode(marker)}}}, evil)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(evil)
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


@needs_shared
@pytest.mark.slow
def test_real_whisper_accuracy_unchanged_by_bad_and_odd_inputs(tmp_path, corpus):
    """Frozen Whisper tiny.en (cached features): odd files used, bad ones skipped, accuracy as clean."""
    real = [o for o in overrides(corpus, "clean", tmp_path) if not o.startswith(("backbone.", "+backbone."))]
    train(compose_train(real, tmp_path / "clean"))
    mixed = [o.replace("clean_", "mixed_") for o in real] + ["data.on_bad_audio=skip"]
    train(compose_train(mixed, tmp_path / "mixed"))
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    got = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert clean["test/acc"] > 0.8
    assert got["test/acc"] == pytest.approx(clean["test/acc"], abs=1e-5)
