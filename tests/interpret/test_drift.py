"""``python -m asr_transfer.drift``: CKA and weight change per layer for top-k and LoRA fine-tuning of a tiny Whisper."""

from __future__ import annotations

import pytest

from asr_transfer.pipeline.drift import drift
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides, write_tone_corpus


def _run(base, *overrides):
    corpus = write_tone_corpus(base / "tones", per_class=2)
    cfg = compose_train(
        [
            *tone_overrides(corpus, base / "cache"),
            *TINY_WHISPER,
            "trainer.max_epochs=2",
            "optimizer.lr=0.01",
            "task.backbone_lr=0.01",  # a visible change in two epochs
            *overrides,
        ],
        base / "run",
    )
    train(cfg)
    return next((base / "run" / "checkpoints").glob("last*.ckpt"))


def test_top_1_changes_only_the_top_layer(tmp_path):
    rows = drift(
        str(_run(tmp_path, "backbone.freeze=top_k", "backbone.top_k=1")), tmp_path / "out", max_clips=8
    )
    assert [r["layer"] for r in rows] == [0, 1, 2]  # embedding + 2 transformer layers
    assert rows[0]["cka"] == pytest.approx(1.0, abs=1e-6) and rows[1]["cka"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["weight_change"] == 0 and rows[1]["weight_change"] == 0
    assert rows[2]["weight_change"] > 0 and rows[2]["cka"] < 1.0
    assert (tmp_path / "out" / "drift.csv").is_file() and (tmp_path / "out" / "drift.png").is_file()


def test_lora_drift_is_its_merged_update(tmp_path):
    rows = drift(str(_run(tmp_path, "adapter=lora", "backbone.freeze=all")), tmp_path / "out", max_clips=8)
    assert rows[0]["weight_change"] == 0  # the input embedding holds no LoRA layer
    assert all(r["weight_change"] > 0 for r in rows[1:])
    assert rows[-1]["cka"] < 1.0
