"""The real thing on the shared assets: the FSDD probe on frozen Whisper tiny.en, unseen-speaker test,
then eval.py on its best checkpoint. Skipped when ../shared is absent; slow (features of 2000 clips)."""

from __future__ import annotations

import json

import pytest

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import FSDD_DIR, WHISPER_DIR, compose_train, needs_shared

pytestmark = [needs_shared, pytest.mark.shared, pytest.mark.slow]


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
    # last, so a run below the bar still shows whether eval reproduces it
    assert metrics["test/acc"] >= 0.95, metrics
