"""A frozen local backbone whose features are all stored is never loaded (``features/card.py``)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from asr_transfer.backbones import whisper as whisper_module
from asr_transfer.features.card import CardBackbone, card_key
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER_CONFIG, compose_train, tone_overrides

TINY = TINY_WHISPER_CONFIG


@pytest.fixture
def local_whisper(tmp_path):
    """A save_pretrained Whisper folder, like ../shared/models/whisper-tiny.en but tiny and random."""
    from safetensors.torch import load_file, save_file
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    folder = tmp_path / "whisper-local"
    WhisperModel(WhisperConfig(**TINY)).save_pretrained(folder)
    # Encoder weights only (as one would ship an encoder): loading then draws the missing decoder's
    # random init from the global RNG, which must not change what the seeded head and dropout draw.
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "decoder" not in k}, folder / "model.safetensors")
    return folder


def run(tmp_path, corpus, folder, name: str, extra=()) -> dict:
    out = tmp_path / name
    overrides = [
        *tone_overrides(corpus, tmp_path / "cache"),
        "backbone=whisper",
        f"backbone.name_or_path={folder}",
        "trainer.max_epochs=2",
        "optimizer.lr=0.02",
        *extra,
    ]
    train(compose_train(overrides, out))
    return json.loads((out / "metrics.json").read_text())


def count_loads(monkeypatch) -> list:
    """Record every real WhisperEncoderBackbone construction."""
    calls: list = []
    original = whisper_module.WhisperEncoderBackbone.__init__

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("name_or_path"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(whisper_module.WhisperEncoderBackbone, "__init__", counting)
    return calls


def test_warm_run_never_loads_the_backbone_and_gives_the_same_result(
    tmp_path, tone_corpus, local_whisper, monkeypatch, caplog
):
    first = run(tmp_path, tone_corpus, local_whisper, "first")
    cards = list((tmp_path / "cache" / "features" / "backbones").glob("*.json"))
    assert len(cards) == 1
    card = json.loads(cards[0].read_text())
    assert card["num_layers"] == 3 and card["hidden_size"] == 32 and card["sample_rate"] == 16000

    loads = count_loads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="asr_transfer.features.stage"):
        second = run(tmp_path, tone_corpus, local_whisper, "second")
    assert loads == []  # every clip stored: the checkpoint folder was never read
    assert "rank 0/1 encoded 0 clips (48 stored before" in caplog.text
    assert second["test/acc"] == first["test/acc"]
    assert second["test/loss"] == pytest.approx(first["test/loss"], abs=1e-6)
    # the counts include the frozen weights the card stands in for: a probe trains a small share
    assert card["parameters"] > 0
    assert first["params/total"] == second["params/total"] == first["params/trainable"] + card["parameters"]
    assert second["params/trainable_pct"] < 100


def test_a_missing_clip_loads_the_real_backbone_once(
    tmp_path, tone_corpus, local_whisper, monkeypatch, caplog
):
    run(tmp_path, tone_corpus, local_whisper, "first")
    rows = tone_corpus["test"].read_text().splitlines()
    new = json.loads(rows[0])  # the test split plus a copy of one clip under a new name: never encoded
    src = tone_corpus["test"].parent / new["audio_filepath"]
    new["audio_filepath"] = new["audio_filepath"].replace(".wav", "_copy.wav")
    (tone_corpus["test"].parent / new["audio_filepath"]).write_bytes(src.read_bytes())
    extra = tone_corpus["test"].parent / "test_plus.jsonl"
    extra.write_text("\n".join([*rows, json.dumps(new)]) + "\n")
    loads = count_loads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="asr_transfer.features.stage"):
        run(tmp_path, tone_corpus, local_whisper, "moved", [f"data.test_manifest={extra}"])
    assert len(loads) == 1  # loaded for the one new clip, then dropped: the task holds the card
    assert "rank 0/1 encoded 1 clips (48 stored before" in caplog.text


def test_card_key_changes_with_the_folder_and_skips_what_cannot_be_carded(tmp_path, local_whisper):
    cfg = {"_target_": "x", "name_or_path": str(local_whisper), "freeze": "all", "pretrained": True}
    key = card_key(cfg)
    assert key is not None and card_key(cfg) == key
    weights = local_whisper / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-downloaded / overwritten weights
    assert card_key(cfg) != key
    assert card_key({**cfg, "min_window_s": 0.0}) != card_key(cfg)  # any backbone setting
    assert card_key({**cfg, "freeze": "none"}) is None  # trainable: its weights change
    assert card_key({**cfg, "pretrained": False}) is None  # random init
    assert (
        card_key({**cfg, "name_or_path": "openai/whisper-tiny.en"}) is None
    )  # hub files can change upstream
    assert card_key({"_target_": "x", "variant": "wav2vec2_base", "freeze": "all"}) is None  # names no folder


def test_card_backbone_refuses_raw_audio():
    card = {"num_layers": 3, "hidden_size": 32, "sample_rate": 16000, "downsample_rate": 320}
    b = CardBackbone({**card, "normalize_waveform": False, "identity": "w", "fingerprint": "f"})
    assert b.fully_frozen and not list(b.parameters()) and b.num_layers == 3
    with pytest.raises(RuntimeError, match="features.mode=off"):
        b(torch.zeros(1, 16000), torch.tensor([16000]))
