"""``explain.py`` on a tiny trained run: per-clip attribution files and ``faithfulness.json`` at both levels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asr_transfer.pipeline.explain import explain
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides, write_tone_corpus


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    """A frozen tiny-Whisper run with an attentive head, so its store keeps frames (level ``frames``)."""
    base = tmp_path_factory.mktemp("explain_run")
    corpus = write_tone_corpus(base / "tones", per_class=2)
    cfg = compose_train(
        [*tone_overrides(corpus, base / "cache"), *TINY_WHISPER, "head=attentive", "trainer.max_epochs=2"],
        base / "run",
    )
    train(cfg)
    return next((base / "run" / "checkpoints").glob("best-*.ckpt"))


def _explain(best, out, *overrides):
    cfg = compose_train(
        [f"ckpt_path={best}", "faithfulness=true", "worst=2", "random=1", *overrides], out, "explain"
    )
    return explain(cfg)


@pytest.mark.parametrize("use_cache,level", [(True, "frames"), (False, "audio")])
def test_explain_writes_clip_attributions_and_the_deletion_test(best, tmp_path, use_cache, level):
    summary = _explain(best, tmp_path, f"use_cache={str(use_cache).lower()}", "shares=[0,0.2,0.5]")
    assert summary["level"] == level
    assert [c["kind"] for c in summary["clips"]] == ["worst", "worst", "random"]
    for clip in summary["clips"]:
        png = tmp_path / "attributions" / clip["png"]
        assert png.read_bytes()[:4] == b"\x89PNG"
        npz = np.load(png.with_suffix(".npz"))
        assert npz["attribution"].ndim == 1 and len(npz["times"]) == len(npz["attribution"])
    saved = json.loads((tmp_path / "faithfulness.json").read_text())
    assert saved["metric"] == "acc" and saved["shares"] == [0.0, 0.2, 0.5]
    assert saved["attribution"][0] == saved["random"][0]  # nothing deleted: the same accuracy
    assert all(0.0 <= a <= 1.0 for a in saved["attribution"] + saved["random"])
    assert (tmp_path / "faithfulness.png").is_file()
    assert json.loads((tmp_path / "attributions" / "index.json").read_text())["level"] == level
