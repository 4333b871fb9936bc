"""The real thing on the shared assets, frozen Whisper tiny.en, unseen test speaker: the FSDD probe then
eval.py on its best checkpoint; CTC on FSDD digit strings, greedy then beam + digit LM.
Skipped when ../shared is absent; slow (features of 2000 clips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import FSDD_DIR, WHISPER_DIR, compose_train, needs_shared

pytestmark = [needs_shared, pytest.mark.shared, pytest.mark.slow]
# Budgets above make test's per-test TIMEOUT: each run encodes all 2000 FSDD clips with Whisper tiny.en.


@pytest.mark.timeout(1200)
def test_fsdd_probe_on_whisper_tiny_and_eval_reproduces_it(tmp_path):
    out = tmp_path / "run"
    cfg = compose_train(
        [
            "experiment=fsdd_probe",
            f"data.corpus.root={FSDD_DIR}",
            f"backbone.name_or_path={WHISPER_DIR}",
            "data.corpus.val_speakers=[nicolas]",
            "data.corpus.test_speakers=[yweweler]",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
        ],
        out,
    )
    val_acc = train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"FSDD probe (whisper tiny.en, test speaker yweweler): {json.dumps(metrics, sort_keys=True)}")
    assert val_acc == pytest.approx(metrics["val/acc"])

    best = next((out / "checkpoints").glob("best-*.ckpt"))
    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    again = evaluate(ecfg)
    assert again["test/acc"] == metrics["test/acc"] and again["test/f1"] == metrics["test/f1"]
    # last, so a run below the bar still shows whether eval reproduces it. The gate is on test speaker
    # yweweler, which chose nothing: backbone.min_window_s was chosen on val nicolas (experiments/min_window/)
    assert metrics["test/acc"] >= 0.95, metrics


# ----- the real thing: frozen Whisper tiny.en on FSDD digit strings, unseen test speaker ------------
@needs_shared
@pytest.mark.timeout(1800)  # 15 epochs of a BiLSTM head on 800 digit strings, then beam search
def test_fsdd_digits_blstm_wer_and_beam_search_with_digit_lm(tmp_path):
    """The issue's target: test WER <= 10 % on yweweler; a digit-word LM + lexicon is no worse than greedy."""
    pytest.importorskip("flashlight.lib.text")
    from asr_transfer.pipeline.lm import main as make_lm

    out = tmp_path / "run"
    cfg = compose_train(
        [
            "experiment=fsdd_digits_ctc",
            f"data.corpus.root={FSDD_DIR}",
            f"backbone.name_or_path={WHISPER_DIR}",
            "data.corpus.val_speakers=[nicolas]",
            "data.corpus.test_speakers=[yweweler]",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
        ],
        out,
    )
    train(cfg)
    greedy = json.loads((out / "metrics.json").read_text())
    # The gate is on test speaker yweweler, which chose nothing: the preset's max_epochs (15) is now chosen on val
    # nicolas's WER (experiments/ctc_epochs/), replacing the 15 -> 12 -> 15 once set on this speaker's test WER.
    assert greedy["test/wer"] <= 0.10, greedy

    best = next((out / "checkpoints").glob("best-*.ckpt"))
    train_manifest = sorted(Path(cfg.paths.cache_dir, "manifests").glob("fsdd_digits-*/train.jsonl"))[-1]
    make_lm(["--manifest", str(train_manifest), "--ckpt", str(best), "--out", str(tmp_path / "lm")])
    ecfg = compose_train(
        [
            f"ckpt_path={best}",
            "+trainer.enable_progress_bar=false",
            "decoding=beam",
            f"decoding.lm={tmp_path / 'lm' / 'lm.arpa'}",
            f"decoding.lexicon={tmp_path / 'lm' / 'lexicon.txt'}",
        ],
        tmp_path / "beam",
        config_name="eval",
    )
    beam = evaluate(ecfg)
    assert beam["test/wer"] <= greedy["test/wer"], (beam, greedy)
