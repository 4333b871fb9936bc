"""``explain.py`` on a tiny trained run: per-clip attribution files and ``faithfulness.json`` at both levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asr_transfer.pipeline.explain import explain
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, TONE_FREQS, compose_train, tone_overrides, write_tone_corpus
from tests.pipeline.test_ctc_runs import ctc_overrides, word_corpus  # noqa: F401, F811  (a fixture)


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


@pytest.mark.parametrize("level", ["frames", "audio"])
def test_explain_writes_clip_attributions_and_the_deletion_test(best, tmp_path, level):
    summary = _explain(best, tmp_path, f"level={level}", "shares=[0,0.2,0.5]")
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


def test_frames_the_backbone_computes_are_explained_like_the_stored_ones(best, tmp_path):
    """use_cache=false: no store, the backbone computes the frames; the attributions match the stored
    frames' (stored in float16: close, not equal)."""
    stored = _explain(best, tmp_path / "stored", "shares=[0,0.2]")
    computed = _explain(best, tmp_path / "computed", "use_cache=false", "shares=[0,0.2]")
    assert computed["level"] == "frames" and [c["clip"] for c in computed["clips"]] == [
        c["clip"] for c in stored["clips"]
    ]
    for c in stored["clips"]:
        a = np.load(tmp_path / "stored" / "attributions" / f"{c['clip']}.npz")["attribution"]
        b = np.load(tmp_path / "computed" / "attributions" / f"{c['clip']}.npz")["attribution"]
        assert np.corrcoef(a, b)[0, 1] > 0.99
    assert computed["faithfulness"]["attribution"] == pytest.approx(
        stored["faithfulness"]["attribution"], abs=0.2
    )


def test_inputs_explain_every_given_file_with_time_and_frequency(best, tmp_path):
    from asr_transfer.utils.errors import ConfigError
    from tests.conftest import tone, write_wav

    folder = tmp_path / "clips"
    for i, hz in enumerate((300, 1800)):
        write_wav(folder / f"clip{i}.wav", tone(0.4, 16000, hz, i), 16000)
    cfg = compose_train(
        [f"ckpt_path={best}", f"inputs={folder}", "spectrogram=true", "bands=4"], tmp_path / "out", "explain"
    )
    summary = explain(cfg)
    assert [c["kind"] for c in summary["clips"]] == ["input", "input"]
    assert [Path(c["audio_filepath"]).name for c in summary["clips"]] == ["clip0.wav", "clip1.wav"]
    for c in summary["clips"]:
        assert "true" not in c and c["pred"] in TONE_FREQS  # the trained label names
        tf = np.load(tmp_path / "out" / "attributions" / c["png_tf"].replace(".png", ".npz"))
        assert tf["attribution"].shape == (4, 4)  # 4 bands x 0.4 s in windows of 2 * window_s
        assert (tmp_path / "out" / "attributions" / c["png_tf"]).read_bytes()[:4] == b"\x89PNG"
    bad = compose_train(
        [f"ckpt_path={best}", f"inputs={folder}", "faithfulness=true"], tmp_path / "x", "explain"
    )
    with pytest.raises(ConfigError, match="inputs= files have no labels"):
        explain(bad)


def test_a_ctc_run_gets_its_posteriorgram_and_an_attribution_per_emitted_token(word_corpus, tmp_path):  # noqa: F811
    cfg = compose_train(
        [*ctc_overrides(word_corpus, tmp_path / "cache"), "trainer.max_epochs=2"], tmp_path / "run"
    )
    train(cfg)
    ckpt = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    summary = explain(
        compose_train(
            [f"ckpt_path={ckpt}", "worst=2", "random=1", "method=input_x_gradient"], tmp_path / "x", "explain"
        )
    )
    assert summary["task"] == "ctc" and len(summary["clips"]) == 3
    for c in summary["clips"]:
        npz = np.load(tmp_path / "x" / "attributions" / c["png"].replace(".png", ".npz"))
        post, attr = npz["posteriorgram"], npz["attribution"]
        assert np.allclose(post.sum(0), 1.0, atol=1e-4)  # a distribution over the vocabulary per frame
        assert attr.shape == (len(c["tokens"]), post.shape[1]) == (len(npz["token_frames"]), post.shape[1])
        assert (
            c["ref"] is not None
            and (tmp_path / "x" / "attributions" / c["png"]).read_bytes()[:4] == b"\x89PNG"
        )
