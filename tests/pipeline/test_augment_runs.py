"""Augmentation in a run: the features stage under waveform augmentation and SpecAugment, the summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from asr_transfer.backbones.base import trains_reason
from asr_transfer.data.dataset import AudioDataset
from asr_transfer.data.noise import write_coloured
from asr_transfer.features.dataset import FeatureDataset
from asr_transfer.pipeline.augment import build_augment
from asr_transfer.pipeline.plan import make_plan, stored_splits
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, audio_datamodule, compose_train, tone_overrides

FAST = ["trainer.max_epochs=2", "head=linear", "featurizer=weighted_sum", *TINY_WHISPER]


def overrides(corpus, tmp_path: Path, augment: str) -> list[str]:
    noise = tmp_path / "noise"
    if not noise.is_dir():
        write_coloured(noise, seconds=1.0, sample_rate=16000, per_colour=1)
    return [
        *tone_overrides(corpus, tmp_path / "cache"),
        *FAST,
        f"augment={augment}",
        f"augment.noise_dir={noise}" if "noise" in augment else "seed=0",
    ]


def spy_runs(monkeypatch, calls: list | None = None) -> list[dict]:
    """Each ``train()`` run's parts, and how many backbone ``calls`` had happened when its store finished."""
    import asr_transfer.pipeline.train as train_mod
    from asr_transfer.pipeline.build import StoredSplits

    runs: list[dict] = []
    real_build, real_store = train_mod.build_parts, StoredSplits.__call__

    def build(*a, **k):
        runs.append({"parts": real_build(*a, **k)})
        return runs[-1]["parts"]

    def store(self, audio):
        out = real_store(self, audio)
        runs[-1]["before_fit"] = (
            None if calls is None else len(calls)
        )  # what the backbone computes is done here
        return out

    monkeypatch.setattr(train_mod, "build_parts", build)
    monkeypatch.setattr(StoredSplits, "__call__", store)
    return runs


def count_forward(monkeypatch):
    """(a list that grows by one per Whisper backbone forward, the real forward)."""
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    calls, real_forward = [], WhisperEncoderBackbone.forward

    def counting(self, *a, **k):
        calls.append(1)
        return real_forward(self, *a, **k)

    monkeypatch.setattr(WhisperEncoderBackbone, "forward", counting)
    return calls, real_forward


def test_the_cache_rule():
    assert trains_reason("all") is None
    assert trains_reason("none") and trains_reason("top_k")
    assert trains_reason("all", {"rank": 8})  # trains inside the backbone
    assert trains_reason("all", None, [{"step": 1, "freeze": "none"}])
    splits = ("train", "val", "test")
    assert stored_splits(False, 0, "fit") == splits  # SpecAugment (after the featurizer) stores everything
    assert stored_splits(True, 0, "fit") == ("val", "test")  # training audio changes
    assert stored_splits(True, 3, "fit") == splits  # its augmented copies
    assert stored_splits(True, 0, "test") == splits  # eval never augments


def test_options_combine_and_build_in_order(tone_corpus, tmp_path):
    cfg = compose_train(overrides(tone_corpus, tmp_path, "[noise,speed,specaugment]"), tmp_path / "run")
    waveform, spec = build_augment(cfg)
    assert waveform.names == ["speed", "noise"] and spec is not None
    assert waveform.augmentations[1].lo == 0 and waveform.augmentations[1].hi == 20  # augment.snr_db
    assert build_augment(compose_train(tone_overrides(tone_corpus, tmp_path), tmp_path / "r2")) == (
        None,
        None,
    )


def test_waveform_augmentation_trains_from_audio_val_test_stored(tone_corpus, tmp_path, caplog, monkeypatch):
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    runs = spy_runs(monkeypatch)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    train(compose_train(overrides(tone_corpus, tmp_path, "[noise,speed]"), out))
    parts = runs[-1]["parts"]
    datasets = parts.datamodule.datasets
    seen = {**{s: type(ds) for s, ds in datasets.items()}, "backbone": type(parts.backbone)}
    encoded = [(sum(parts.stored.encoded), len(datasets["val"]) + len(datasets["test"]))]
    assert seen == {
        "train": AudioDataset,  # augmented audio through the backbone every step
        "val": FeatureDataset,  # stored and clean
        "test": FeatureDataset,
        "backbone": WhisperEncoderBackbone,  # the real one: training needs its weights
    }
    assert encoded[0][0] == encoded[0][1] > 0  # val + test clips only, never the training split
    assert "training reads audio through the backbone every step; val/test read stored" in caplog.text
    metrics = json.loads((out / "metrics.json").read_text())
    n = 24  # training clips
    assert metrics["augment/noise/clips"] == 2 * n  # p=1, 2 epochs
    assert 0 < metrics["augment/speed/clips"] < 2 * n  # factor 1.0 draws do not count
    assert "augmented: noise/clips 48" in caplog.text
    # the same run again finds val/test stored: nothing is encoded a second time
    train(compose_train(overrides(tone_corpus, tmp_path, "[noise,speed]"), tmp_path / "again"))
    assert sum(runs[-1]["parts"].stored.encoded) == 0


def test_specaugment_trains_from_cached_frames_without_the_backbone(
    tone_corpus, tmp_path, caplog, monkeypatch
):
    calls, _ = count_forward(monkeypatch)
    runs = spy_runs(monkeypatch, calls)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    cfg = compose_train(
        [*overrides(tone_corpus, tmp_path, "specaugment"), "augment.specaugment.mask_time_prob=0.5"], out
    )
    train(cfg)
    before_fit = runs[-1]["before_fit"]
    assert before_fit > 0 and len(calls) == before_fit  # stored once; nothing during fit or test
    assert "stores frames, not pooled vectors" in caplog.text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["augment/specaugment/batches"] == 2 * 2  # 2 epochs x (24 clips / batch 16)
    assert metrics["augment/specaugment/time_masked_fraction"] > 0.2
    # a second run finds every split stored: the backbone never runs at all
    calls.clear()
    train(compose_train(overrides(tone_corpus, tmp_path, "specaugment"), tmp_path / "run2"))
    assert calls == []


def test_stored_augmented_copies_train_from_the_store_and_equal_on_the_fly_epochs(
    tone_corpus, tmp_path, caplog, monkeypatch
):
    """features.augmented_copies=2: the training split is stored as 2 augmented copies (copy c = what
    epoch c of on-the-fly augmentation draws), the backbone runs only in the features pass, a second
    run encodes nothing, another augmentation is encoded again (val/test not)."""
    import torch

    from asr_transfer.data.augmented import AugmentedDataset
    from asr_transfer.features.card import CardBackbone
    from asr_transfer.pipeline.build import build_backbone
    from asr_transfer.utils.masks import masked_mean

    calls, real_forward = count_forward(monkeypatch)
    runs = spy_runs(monkeypatch, calls)

    def seen() -> dict:
        parts = runs[-1]["parts"]
        return dict(datamodule=parts.datamodule, encoded=sum(parts.stored.encoded),
                    before_fit=runs[-1]["before_fit"], backbone=parts.backbone)  # fmt: skip

    caplog.set_level(logging.INFO)
    n, copies = 24, 2  # training clips (tone corpus), copies stored
    args = [*overrides(tone_corpus, tmp_path, "[noise,gain]"), f"features.augmented_copies={copies}"]
    cfg = compose_train(args, tmp_path / "run")
    train(cfg)
    seen = seen()
    dm = seen["datamodule"]
    assert all(isinstance(ds, FeatureDataset) for ds in dm.datasets.values())
    assert isinstance(seen["backbone"], CardBackbone) and dm.augment is None  # nothing augments on the fly
    assert len(dm.datasets["train"]) == copies * n
    assert seen["encoded"] == copies * n + len(dm.datasets["val"]) + len(dm.datasets["test"])
    assert len(calls) == seen["before_fit"]  # the backbone ran in the features pass only
    assert f"training reads {copies} stored augmented copies of each of its {n} clips" in caplog.text
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["augment/stored_copies"] == copies
    assert metrics["augment/noise/clips"] == copies * n and metrics["augment/noise/fraction"] == 1.0

    # stored copy c of clip i == the backbone on clip i as epoch c of on-the-fly augmentation draws it
    backbone = build_backbone(cfg).eval()
    audio = audio_datamodule(cfg, backbone)
    audio.setup("fit")
    chain = make_plan(cfg, overrides=[]).waveform_augment  # what on-the-fly epochs would apply
    fly = AugmentedDataset(audio.datasets["train"], chain, audio.seed)
    train_ds = dm.datasets["train"]
    for c, i in [(0, 0), (1, 0), (1, 7)]:
        item = train_ds[c * n + i]
        wav = fly[(c, i)]["wav"]
        with torch.no_grad():
            hidden, flens = real_forward(backbone, wav[None], torch.tensor([len(wav)]))
        want = torch.stack([masked_mean(h, flens)[0] for h in hidden])  # (layers, hidden)
        assert torch.allclose(item["features"], want, atol=1e-4), (c, i)
        assert item["target"] == audio.datasets["train"][i]["target"]
    assert not torch.allclose(train_ds[0]["features"], train_ds[n]["features"])  # copies differ

    calls.clear()
    train(compose_train(args, tmp_path / "again"))
    assert (
        sum(runs[-1]["parts"].stored.encoded) == 0 and calls == []
    )  # everything stored: the backbone never runs
    train(compose_train([*args, "augment.snr_db=[5,5]"], tmp_path / "other"))
    assert (
        sum(runs[-1]["parts"].stored.encoded) == copies * n
    )  # other augmentation, other copies; val/test reused


@pytest.mark.parametrize("augment", ["speed", "gain"])
def test_eval_is_never_augmented(augment, tone_corpus, tmp_path):
    from asr_transfer.pipeline.build import build_backbone

    cfg = compose_train(overrides(tone_corpus, tmp_path, augment), tmp_path / "run")
    backbone = build_backbone(cfg)
    assert audio_datamodule(cfg, backbone).augment is not None
    assert audio_datamodule(cfg, backbone, "test").augment is None


def test_augmented_copies_say_when_they_do_nothing(tone_corpus, tmp_path, caplog):
    def features_stage(cfg):
        return make_plan(cfg, overrides=[]).store

    caplog.set_level(logging.INFO)
    base = [*tone_overrides(tone_corpus, tmp_path / "cache"), *FAST, "features.augmented_copies=2"]
    assert features_stage(compose_train(base, tmp_path / "a")) is not None
    assert "features.augmented_copies=2 does nothing without waveform augmentation" in caplog.text
    cfg = compose_train(
        [*overrides(tone_corpus, tmp_path, "noise"), "features.augmented_copies=2", "backbone.freeze=none"],
        tmp_path / "b",
    )
    assert features_stage(cfg) is None
    assert "features.augmented_copies=2 ignored: training augments on the fly" in caplog.text
    with pytest.raises(Exception, match=r"features.augmented_copies=-1: 0 \(augment on the fly\)"):
        features_stage(compose_train([*base, "features.augmented_copies=-1"], tmp_path / "c"))
