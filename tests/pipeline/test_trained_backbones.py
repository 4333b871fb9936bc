"""Checkpoints whose backbone trained (freeze=top_k, none, scratch): the backbone is saved, eval.py
reproduces the run's test metrics and predict.py's labels score the same accuracy; the optimizer
holds state for trainable parameters only, with the backbone at ``task.backbone_lr``. The CLIs
(eval.py, predict.py with a folder and CSV output) run once, as users call them."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch

from asr_transfer.pipeline.build import build_backbone
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, predict_rows, run_python, tone_overrides
from tests.presets import TINY_OVERRIDES

KINDS = {
    "top_k": [*TINY_WHISPER, "backbone.freeze=top_k", "backbone.top_k=1"],
    "none": [*TINY_WHISPER, "backbone.freeze=none"],
    "scratch": ["backbone=scratch", *TINY_OVERRIDES["ScratchBackbone"]],
}


def _accuracy(rows: list[dict], corpus) -> float:
    truth = {
        str(corpus["test"].parent / json.loads(x)["audio_filepath"]): json.loads(x)["label"]
        for x in corpus["test"].read_text().splitlines()
    }
    got = {r["audio_filepath"]: r["pred"] for r in rows if r["audio_filepath"] in truth}
    assert len(got) == len(truth)
    return sum(got[f] == label for f, label in truth.items()) / len(truth)


@pytest.mark.parametrize("kind", list(KINDS))
def test_trained_backbone_checkpoint_evaluates_and_predicts_the_same(kind, tmp_path, tone_corpus):
    out = tmp_path / "run"
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *KINDS[kind], "trainer.max_epochs=1", "~logger"]
    cfg = compose_train([*over, "optimizer.lr=0.01", "task.backbone_lr=0.003"], out)
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(best, weights_only=True)
    assert state["asr_transfer"]["backbone_saved"] is True

    # the checkpoint holds the backbone's trainable weights, and they moved from their (seeded) init
    init = build_backbone(cfg)
    trainable = {n for n, p in init.named_parameters() if p.requires_grad}
    saved = {k.removeprefix("backbone.") for k in state["state_dict"] if k.startswith("backbone.")}
    assert trainable <= saved, sorted(trainable - saved)[:5]
    params = dict(init.named_parameters())
    changed = {n for n in trainable if not torch.equal(state["state_dict"][f"backbone.{n}"], params[n])}
    assert changed, "no trainable backbone weight moved"
    if kind == "top_k":
        assert trainable == {f"model.layers.1.{n}" for n, _ in init.model.layers[1].named_parameters()}

    # optimizer: head group at optimizer.lr, backbone group at task.backbone_lr, no state for frozen params
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    groups = last["optimizer_states"][0]["param_groups"]
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert [g["initial_lr"] for g in groups] == [0.01, 0.003]
    assert len(groups[1]["params"]) == len(trainable)
    assert len(last["optimizer_states"][0]["state"]) == sum(len(g["params"]) for g in groups)

    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    again = evaluate(ecfg)
    assert again["test/acc"] == metrics["test/acc"]
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
    rows = predict_rows(best, tone_corpus["test"].parent / "audio", tmp_path / "p.json")
    assert _accuracy(rows, tone_corpus) == pytest.approx(metrics["test/acc"], abs=1e-6)


def _cli(script: str, args: list[str]) -> subprocess.CompletedProcess:
    proc = run_python(script, *args, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_eval_and_predict_clis_on_a_folder_write_metrics_and_csv(tmp_path, tone_corpus):
    out = tmp_path / "run"
    train(
        compose_train(
            [
                *tone_overrides(tone_corpus, tmp_path / "cache"),
                *TINY_WHISPER,
                "trainer.max_epochs=1",
                "~logger",
            ],
            out,
        )
    )
    metrics = json.loads((out / "metrics.json").read_text())
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    _cli(
        "eval.py",
        [f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}", "+trainer.enable_progress_bar=false"],
    )
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    confusion = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["high", "low", "mid"] and sum(map(sum, confusion["matrix"])) == 12

    # a folder: searched recursively, audio suffixes only (any case), sorted; no output: <run dir>/predictions.csv
    folder = tmp_path / "inputs"
    audio = tone_corpus["test"].parent / "audio"
    clips = sorted(audio.glob("*_s3_*.wav"))
    (folder / "deep" / "er").mkdir(parents=True)
    for i, c in enumerate(clips):
        (folder / ("deep/er" if i % 2 else "") / (c.stem + (".WAV" if i == 0 else ".wav"))).write_bytes(
            c.read_bytes()
        )
    (folder / "notes.txt").write_text("not audio\n")
    _cli("predict.py", [f"ckpt_path={best}", f"inputs={folder}", f"hydra.run.dir={tmp_path / 'pred'}"])
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() == ".wav")
    assert [r["audio_filepath"] for r in rows] == found and len(rows) == len(clips) == 12
    assert list(rows[0]) == ["audio_filepath", "pred", "confidence", "prob_high", "prob_low", "prob_mid"]
    for r in rows:
        probs = {k: float(v) for k, v in r.items() if k.startswith("prob_")}
        assert r["pred"] == max(probs, key=probs.get).removeprefix("prob_")
        assert float(r["confidence"]) == pytest.approx(max(probs.values()), abs=1e-6)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
