"""Augmentation in a run: the features stage under waveform augmentation and SpecAugment, the summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from asr_transfer.data.dataset import AudioDataset
from asr_transfer.data.noise import write_coloured
from asr_transfer.features import cacheable
from asr_transfer.features.dataset import FeatureDataset
from asr_transfer.features.stage import stored_splits
from asr_transfer.pipeline.augment import build_augment
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides

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


def test_the_cache_rule():
    assert cacheable({"freeze": "all"})
    assert not cacheable({"freeze": "none"}) and not cacheable({"freeze": "top_k", "top_k": 1})
    assert not cacheable({"freeze": "all", "adapter": {"rank": 8}})  # trains inside the backbone
    assert not cacheable({"freeze": "all", "unfreeze": [{"step": 1, "freeze": "none"}]})
    splits = ["train", "val", "test"]
    assert stored_splits(splits) == splits
    assert stored_splits(splits, {"specaugment": {"mask_time_prob": 0.5}}) == splits  # after the featurizer
    assert stored_splits(splits, {"waveform": {"noise": {}}}) == ["val", "test"]  # training audio changes
    assert stored_splits(splits, {"waveform": {"noise": {}}}, copies=3) == splits  # its augmented copies


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
    import asr_transfer.pipeline.train as train_mod
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    seen, encoded = {}, []
    real_store = train_mod.store_features

    def spy(*a, **k):
        backbone, datamodule, result = real_store(*a, **k)
        seen.update({s: type(ds) for s, ds in datamodule.datasets.items()}, backbone=type(backbone))
        encoded.append(
            (sum(result.encoded), len(datamodule.datasets["val"]) + len(datamodule.datasets["test"]))
        )
        return backbone, datamodule, result

    monkeypatch.setattr(train_mod, "store_features", spy)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    train(compose_train(overrides(tone_corpus, tmp_path, "[noise,speed]"), out))
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
    assert encoded[-1][0] == 0


def test_specaugment_trains_from_cached_frames_without_the_backbone(
    tone_corpus, tmp_path, caplog, monkeypatch
):
    import asr_transfer.pipeline.train as train_mod
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    calls, before_fit = [], []
    real_forward, real_store = WhisperEncoderBackbone.forward, train_mod.store_features

    def counting(self, *a, **k):
        calls.append(1)
        return real_forward(self, *a, **k)

    def store(*a, **k):
        out = real_store(*a, **k)
        before_fit.append(len(calls))  # everything the backbone computes happens up to here
        return out

    monkeypatch.setattr(WhisperEncoderBackbone, "forward", counting)
    monkeypatch.setattr(train_mod, "store_features", store)
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    cfg = compose_train(
        [*overrides(tone_corpus, tmp_path, "specaugment"), "augment.specaugment.mask_time_prob=0.5"], out
    )
    train(cfg)
    assert before_fit[0] > 0 and len(calls) == before_fit[0]  # stored once; nothing during fit or test
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

    import asr_transfer.pipeline.train as train_mod
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone
    from asr_transfer.data.augmented import AugmentedDataset
    from asr_transfer.features.card import CardBackbone
    from asr_transfer.heads import masked_mean
    from asr_transfer.pipeline.build import build_backbone, build_datamodule

    calls, seen = [], {}
    real_forward, real_store = WhisperEncoderBackbone.forward, train_mod.store_features

    def counting(self, *a, **k):
        calls.append(1)
        return real_forward(self, *a, **k)

    def spy(*a, **k):
        backbone, datamodule, result = real_store(*a, **k)
        seen.update(
            datamodule=datamodule, encoded=sum(result.encoded), before_fit=len(calls), backbone=backbone
        )
        return backbone, datamodule, result

    monkeypatch.setattr(WhisperEncoderBackbone, "forward", counting)
    monkeypatch.setattr(train_mod, "store_features", spy)
    caplog.set_level(logging.INFO)
    n, copies = 24, 2  # training clips (tone corpus), copies stored
    args = [*overrides(tone_corpus, tmp_path, "[noise,gain]"), f"features.augmented_copies={copies}"]
    cfg = compose_train(args, tmp_path / "run")
    train(cfg)
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
    audio = build_datamodule(cfg, backbone)
    audio.setup("fit")
    fly = AugmentedDataset(audio.datasets["train"], audio.augment, audio.seed)
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
    assert seen["encoded"] == 0 and calls == []  # everything stored: the backbone never runs
    train(compose_train([*args, "augment.snr_db=[5,5]"], tmp_path / "other"))
    assert seen["encoded"] == copies * n  # other augmentation, other copies; val/test are reused


@pytest.mark.parametrize("augment", ["speed", "gain"])
def test_eval_is_never_augmented(augment, tone_corpus, tmp_path):
    from asr_transfer.pipeline.build import build_backbone, build_datamodule

    cfg = compose_train(overrides(tone_corpus, tmp_path, augment), tmp_path / "run")
    backbone = build_backbone(cfg)
    assert build_datamodule(cfg, backbone).augment is not None
    assert build_datamodule(cfg, backbone, train=False).augment is None


def test_augmented_copies_say_when_they_do_nothing(tone_corpus, tmp_path, caplog):
    from asr_transfer.pipeline.build import features_stage

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
