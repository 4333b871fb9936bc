"""End-to-end runs of train.py / eval.py / predict.py on generated audio with a tiny random backbone."""

from __future__ import annotations

import json
import math

import pytest
import torch

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, predict_rows, tone_overrides


def _train(tmp_path, corpus, extra=()):
    out = tmp_path / "run"
    cfg = compose_train(
        [
            *tone_overrides(corpus, tmp_path / "cache"),
            *TINY_WHISPER,
            "trainer.max_epochs=2",
            "optimizer.lr=0.01",
            "~probe",  # the minibatch path's contract (best + last checkpoints); probe=lbfgs: tests/probe/
            *extra,
        ],
        out,
    )
    return cfg, train(cfg), out


def test_train_writes_run_dir_contract(tmp_path, tone_corpus):
    cfg, metric, out = _train(tmp_path, tone_corpus)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val/acc", "test/acc", "test/f1", "test/loss", "train/loss"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metric == pytest.approx(metrics["val/acc"])
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)  # loads without running code
    assert state["asr_transfer"]["labels"] == ["high", "low", "mid"]
    assert state["asr_transfer"]["config"]["backbone"]["_target_"].endswith("WhisperEncoderBackbone")
    # frozen backbone: the pretrained weights are not stored a second time
    assert not any(k.startswith("backbone.") for k in state["state_dict"])


def test_eval_reproduces_test_metrics_and_predict_agrees(tmp_path, tone_corpus):
    cfg, _, out = _train(tmp_path, tone_corpus)
    train_metrics = json.loads((out / "metrics.json").read_text())
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    metrics = evaluate(ecfg)
    assert metrics["test/acc"] == train_metrics["test/acc"]
    # the loss too: eval rebuilt the same (seeded, random-init) frozen backbone, so it read the same cache
    assert metrics["test/loss"] == pytest.approx(train_metrics["test/loss"], abs=1e-6)
    assert (
        json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == train_metrics["test/acc"]
    )

    audio = tone_corpus["test"].parent / "audio"
    rows = predict_rows(best, audio, tmp_path / "p.json")
    assert len(rows) == len(list(audio.glob("*.wav")))
    for r in rows:
        probs = {k.removeprefix("prob_"): v for k, v in r.items() if k.startswith("prob_")}
        assert sorted(probs) == ["high", "low", "mid"] and sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert r["pred"] == max(probs, key=probs.get)
    # predict agrees with evaluation: its labels on the test clips score eval's test accuracy exactly
    truth = {
        str(audio.parent / json.loads(x)["audio_filepath"]): json.loads(x)["label"]
        for x in tone_corpus["test"].read_text().splitlines()
    }
    predicted = {r["audio_filepath"]: r["pred"] for r in rows if r["audio_filepath"] in truth}
    assert len(predicted) == len(truth) == 12
    hits = sum(predicted[f] == label for f, label in truth.items())
    assert hits / len(truth) == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_ckpt_path_of_a_finished_run_continues_its_epoch_count(tmp_path, tone_corpus):
    cfg, _, out = _train(tmp_path, tone_corpus, ["features.mode=off"])
    last = out / "checkpoints" / "last.ckpt"
    steps_per_epoch = 2  # 24 training clips, batch_size 16
    assert torch.load(last, weights_only=True)["global_step"] == 2 * steps_per_epoch
    cfg2 = compose_train(
        [
            *tone_overrides(tone_corpus, tmp_path / "cache"),
            *TINY_WHISPER,
            "trainer.max_epochs=4",
            "optimizer.lr=0.01",
            "features.mode=off",
            f"ckpt_path={last}",
        ],
        out,
    )
    train(cfg2)
    # continued from epoch 2: two more epochs, not four (an interrupted run: the kill -9 test, slow tier)
    assert torch.load(last, weights_only=True)["global_step"] == 4 * steps_per_epoch


def test_wrong_group_option_names_choices(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as e:
        compose_train(["head=nosuchhead"], tmp_path)
    assert "head" in str(e.value) and "linear" in str(e.value)


def test_bf16_mixed_precision_fine_tunes_the_backbone_on_cpu(tmp_path, tone_corpus, monkeypatch):
    """bf16-mixed on CPU with the backbone on raw audio and trainable: the head runs under autocast,
    the backbone weights move, loss and metrics stay finite."""
    from asr_transfer.heads import LinearHead
    from asr_transfer.pipeline.build import build_backbone

    seen = []
    forward = LinearHead.forward

    def spy(self, *a, **kw):
        out = forward(self, *a, **kw)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    monkeypatch.setattr(LinearHead, "forward", spy)
    cfg, _, out = _train(
        tmp_path, tone_corpus, ["trainer.precision=bf16-mixed", "features.mode=off", "backbone.freeze=none"]
    )
    assert seen and all(on and dtype == torch.bfloat16 for on, dtype in seen), set(seen)
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    trained = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    initial = build_backbone(cfg).state_dict()  # the same seeded random init
    changed = [k for k, v in initial.items() if not torch.equal(trained[f"backbone.{k}"], v)]
    assert len(changed) > len(initial) // 2, f"{len(changed)} of {len(initial)} backbone tensors changed"
