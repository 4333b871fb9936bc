"""task=seq2seq end to end on a tiny random Whisper (tiny.en's tokenizer and generation config):
train from stored encoder states = the uncached path; eval of the checkpoint reproduces the test
metrics; predict transcribes; zero-shot eval needs no checkpoint; a lean checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from asr_transfer.pipeline.evaluate import evaluate, zero_shot
from asr_transfer.pipeline.train import train
from asr_transfer.tasks.seq2seq import Seq2SeqTask
from tests.conftest import TINY_WHISPER, compose_train, needs_shared, predict_rows, tone_overrides
from tests.pipeline.test_ctc_runs import word_corpus  # noqa: F401  (fixture)

pytestmark = needs_shared  # the tokenizer files come from ../shared whisper-tiny.en


def s2s_overrides(corpus, cache_dir) -> list[str]:
    return [
        *tone_overrides(corpus, cache_dir),
        *TINY_WHISPER,
        "task=seq2seq",
        "task.decoding.max_new_tokens=6",  # a random decoder never stops by itself
        "optimizer.lr=0.01",
        "seed=3",
    ]


def test_train_eval_predict_and_a_lean_checkpoint(tmp_path, word_corpus):  # noqa: F811
    out = tmp_path / "run"
    cfg = compose_train([*s2s_overrides(word_corpus, tmp_path / "cache"), "trainer.max_epochs=1"], out)
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test/wer", "test/cer", "test/wer_raw", "test/cer_raw", "test/hallucination", "val/wer"} <= set(
        metrics
    )
    assert metrics["params/encoder_trainable"] == 0 and metrics["params/decoder_trainable"] > 0
    rows = [json.loads(x) for x in (out / "test_transcripts.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"audio_filepath", "ref", "pred", "ref_norm", "pred_norm"} <= set(rows[0])
    assert metrics["test/hallucination"] == pytest.approx(sum(r["hallucinated"] for r in rows) / 6)
    # the per-clip rows give the logged metrics back, and every metric carries its interval
    clip = Seq2SeqTask.clip_metrics(rows)
    for m in ("wer", "cer", "wer_raw", "cer_raw"):
        assert clip[m].value() == pytest.approx(metrics[f"test/{m}"], abs=1e-6)
        assert metrics[f"test/{m}_ci95_low"] <= metrics[f"test/{m}"] <= metrics[f"test/{m}_ci95_high"]

    best = next((out / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(best, weights_only=True)
    keys = set(state["state_dict"])
    assert not any(k.startswith("backbone.") for k in keys)  # the frozen encoder is reloaded, not stored
    assert not any("embed_tokens" in k or "proj_out" in k for k in keys)  # frozen decoder parts neither
    assert any(k.startswith("head.model.model.decoder.layers.") for k in keys)

    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    emetrics = evaluate(ecfg)
    for k in ("test/wer", "test/cer", "test/wer_raw", "test/hallucination"):
        assert emetrics[k] == metrics[k], k
    pred = predict_rows(best, [r["audio_filepath"] for r in rows], tmp_path / "p.json")
    assert [r["text"] for r in pred] == [r["pred"] for r in rows]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_training_from_stored_states_equals_the_uncached_path(tmp_path, word_corpus, dtype, tol):  # noqa: F811
    """The decoder trained on stored encoder states (the encoder never runs) against the encoder run
    every step: float32 stores agree to 1e-5 in loss and give the same transcripts; the default
    float16 store agrees to 2e-3 (relative) in loss."""
    results = {}
    for mode in ("auto", "off"):
        out = tmp_path / mode
        extra = ["trainer.max_epochs=1", f"features.mode={mode}", f"features.dtype={dtype}"]
        train(compose_train([*s2s_overrides(word_corpus, tmp_path / "cache"), *extra], out))
        rows = [json.loads(x)["pred"] for x in (out / "test_transcripts.jsonl").read_text().splitlines()]
        results[mode] = (json.loads((out / "metrics.json").read_text()), rows)
    (stored, stored_rows), (live, live_rows) = results["auto"], results["off"]
    for k in ("train/loss", "val/loss", "test/loss"):
        assert math.isclose(stored[k], live[k], rel_tol=tol, abs_tol=tol), (k, stored[k], live[k])
    if dtype == "float32":
        assert stored_rows == live_rows


def test_zero_shot_eval_needs_no_checkpoint(tmp_path, word_corpus):  # noqa: F811
    """eval.py without ckpt_path: the pretrained model as composed (val and test, same metrics)."""
    out = tmp_path / "zs"
    metrics = zero_shot(compose_train(s2s_overrides(word_corpus, tmp_path / "cache"), out))
    assert {"val/wer", "test/wer", "test/hallucination", "params/total"} <= set(metrics)
    assert (out / "test_transcripts.jsonl").is_file() and (out / "metrics.json").is_file()
    with pytest.raises(ValueError, match="must be trained first"):
        zero_shot(compose_train([*tone_overrides(word_corpus, tmp_path / "cache"), *TINY_WHISPER], out))


@pytest.mark.parametrize("long_audio", ["skip", "crop"])
def test_transcripts_longer_than_the_decoder_follow_long_audio(tmp_path, word_corpus, long_audio):  # noqa: F811
    """A decoder of 7 positions: check_data.py names every longer transcript by manifest and row before a
    run; the run's datamodule leaves those rows out (skip, logged in bad_audio.jsonl) or cuts them to
    fit (crop), never silently."""
    from asr_transfer.pipeline.check_data import check_datamodule, scan
    from asr_transfer.text.whisper import WhisperText
    from tests.conftest import WHISPER_DIR
    from tests.presets import TINY_WHISPER_CONFIG, hydra_dict

    short = "+backbone.config_overrides=" + hydra_dict({**TINY_WHISPER_CONFIG, "max_target_positions": 7})
    overrides = [
        o if not o.startswith("+backbone.config_overrides") else short
        for o in s2s_overrides(word_corpus, tmp_path / "cache")
    ]
    cfg = compose_train([*overrides, f"data.long_audio={long_audio}"], tmp_path / "check")
    text = WhisperText(str(WHISPER_DIR), multilingual=False)
    long = {
        (path.name, i + 1)
        for path in word_corpus.values()
        for i, row in enumerate(path.read_text().splitlines())
        if text.n_tokens(json.loads(row)["text"]) > 7
    }
    assert long  # the corpus has 1-3 word transcripts: some need more than 7 positions
    problems, _ = scan(cfg)
    reason, severity = (
        ("long_transcript", "skipped") if long_audio == "skip" else ("cropped_transcript", "note")
    )
    found = {(Path(p.manifest).name, p.line) for p in problems if p.reason == reason}
    assert found == long and all(p.severity == severity for p in problems if p.reason == reason)
    assert all("decoder positions" in p.detail for p in problems if p.reason == reason)

    dm = check_datamodule(compose_train([*overrides, f"data.long_audio={long_audio}"], tmp_path / "run"))
    dm.prepare_data()
    dm.setup("fit")
    kept = [e for rows in dm.entries.values() for e in rows]
    assert all(text.n_tokens(e.text) <= 7 for e in kept)
    left_out = {(Path(r["manifest"]).name, r["line"]) for r in dm.bad_log.records}
    assert left_out <= long and bool(left_out) == (long_audio == "skip")
