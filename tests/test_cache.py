"""The features stage: faithful to the backbone and to the old cache, keyed by everything that changes features."""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.features import FeatureStore
from asr_transfer.featurizers import LastLayer, WeightedSum
from asr_transfer.heads import AttentiveHead, LinearHead
from asr_transfer.tasks.classification import ClassificationTask
from asr_transfer.utils.masks import masked_mean
from tests.conftest import TINY_WHISPER_CONFIG

REFERENCE = Path(__file__).parent / "data" / "features_reference.json"


def backbone(seed=0):
    torch.manual_seed(seed)
    # min_window_s=0.5: the window tests/data/features_reference.json was computed with
    return WhisperEncoderBackbone(pretrained=False, config_overrides=TINY_WHISPER_CONFIG, min_window_s=0.5)


def audio_dm(corpus, **kw) -> AudioDataModule:
    dm = AudioDataModule(str(corpus["train"]), str(corpus["val"]), str(corpus["test"]), **kw)
    dm.setup("fit")
    return dm


def stored(
    corpus, tmp_path, featurizer=WeightedSum, pooled=True, bb=None, dm_kw=None, device=None, **stage_kw
):
    """(audio datamodule, datamodule of stored features, FeatureSet, backbone) for ``corpus``."""
    dm = audio_dm(corpus, **(dm_kw or {}))
    bb = bb if bb is not None else backbone()
    layers = featurizer(num_layers=bb.num_layers, hidden_size=bb.hidden_size).layers
    stage_kw.setdefault("dtype", "float32")
    stage = FeatureStore(str(tmp_path / "features"), **stage_kw)
    fs = stage.run(dm.datasets, bb, layers, pooled, build=lambda: bb, device=device)
    fdm = AudioDataModule(
        str(corpus["train"]), str(corpus["val"]), str(corpus["test"]), store=lambda audio: fs.datasets,
        labels=dm.labels, **(dm_kw or {})
    )  # fmt: skip
    fdm.setup("fit")
    return dm, fdm, fs, bb


def probe(bb, featurizer=WeightedSum, head=LinearHead, seed=1) -> ClassificationTask:
    torch.manual_seed(seed)
    task = ClassificationTask(
        backbone=bb,
        featurizer=featurizer(num_layers=bb.num_layers, hidden_size=bb.hidden_size),
        head=partial(head),
        optimizer=partial(torch.optim.AdamW),
        num_classes=3,
        labels=["0", "1", "2"],
    )
    return task.eval()


def first_batch(dm, split="test"):
    return next(iter(dm.loader(split)))


def fixed_corpus(root: Path) -> dict[str, Path]:
    """The corpus tests/data/features_reference.json was computed on (seeded, unlike ``tone_corpus``)."""
    out = {}
    for s, split in enumerate(("train", "val", "test")):
        rows = []
        for c, f in enumerate((300.0, 800.0, 1800.0)):
            for k in range(4):
                rng = np.random.default_rng(100 * s + 10 * c + k)
                dur, sr = 0.3 + 0.1 * (k % 3), (8000 if k % 2 else 16000)
                t = np.arange(int(dur * sr)) / sr
                x = 0.5 * np.sin(2 * math.pi * f * (1 + 0.02 * k) * t) + 0.05 * rng.standard_normal(t.shape)
                p = root / "audio" / f"{split}_{c}_{k}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), x.astype(np.float32), sr, subtype="PCM_16")
                rows.append({"audio_filepath": str(p), "duration": dur, "label": str(c)})
        out[split] = root / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.parametrize("kind,head", [("pooled", LinearHead), ("frames", AttentiveHead)])
def test_stage_gives_the_logits_of_the_old_cache(tmp_path, kind, head):
    """Reference: the same probe through the removed ``FeatureCache`` (tests/data/make_features_reference.py).
    float32 storage both ways; tolerance 1e-5 covers batch-composition rounding of the encoder."""
    corpus = fixed_corpus(tmp_path / "corpus")
    _, fdm, fs, _ = stored(corpus, tmp_path, pooled=kind == "pooled", dm_kw={"eval_batch_size": 64})
    task = probe(fs.backbone, head=head)
    with torch.no_grad():
        task.featurizer.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
        batch = first_batch(fdm)
        logits = task(batch)
    names = [
        Path(fdm.datasets["test"].entries[j].audio_filepath).name for j in range(len(fdm.datasets["test"]))
    ]
    by_position = dict(zip(fdm.datasets["test"].positions, names))
    expected = json.loads(REFERENCE.read_text())[kind]
    got = {by_position[i]: row for i, row in zip(batch["index"].tolist(), logits)}
    assert sorted(got) == sorted(expected)
    for name, row in got.items():
        torch.testing.assert_close(row, torch.tensor(expected[name]), atol=1e-5, rtol=1e-5)


def test_stored_features_are_what_the_backbone_computes(tone_corpus, tmp_path):
    dm, fdm, fs, bb = stored(tone_corpus, tmp_path)
    raw = first_batch(dm)
    with torch.no_grad():
        hidden, flens = bb(raw["wavs"], raw["lengths"])
        expected = torch.stack([masked_mean(h, flens) for h in hidden], dim=1)  # (B, L, D)
    cached = first_batch(fdm)
    assert cached["index"].tolist() == raw["index"].tolist()
    torch.testing.assert_close(cached["features"], expected, atol=1e-5, rtol=1e-5)  # float32: rounding only
    _, fdm16, _, _ = stored(tone_corpus, tmp_path / "16", bb=bb, dtype="float16")
    torch.testing.assert_close(
        first_batch(fdm16)["features"], expected, atol=2e-3, rtol=2e-3
    )  # fp16 rounding
    assert fs.encoded == [48]  # every clip of the three splits, once


def test_second_run_encodes_nothing(tone_corpus, tmp_path, monkeypatch):
    stored(tone_corpus, tmp_path)
    monkeypatch.setattr("asr_transfer.features.stage.encode", _no_backbone)
    _, _, fs, _ = stored(tone_corpus, tmp_path)
    assert fs.encoded == [0]


def _no_backbone(*a, **k):
    raise AssertionError("the backbone ran although every clip was stored")


def spec_folder(
    corpus, tmp_path, featurizer=WeightedSum, pooled=True, seed=0, dtype="float32", max_samples=None
):
    dm = audio_dm(corpus)
    if max_samples is not None:
        for ds in dm.datasets.values():
            ds.max_samples = max_samples
    bb = backbone(seed)
    stage = FeatureStore(str(tmp_path), dtype=dtype)
    from asr_transfer.features.card import make_card

    layers = featurizer(num_layers=bb.num_layers, hidden_size=bb.hidden_size).layers
    return stage.folder(make_card(bb), layers, pooled, dm.datasets)[0]


def test_spec_changes_with_every_ingredient(tone_corpus, tmp_path):
    base = spec_folder(tone_corpus, tmp_path)
    assert spec_folder(tone_corpus, tmp_path) == base
    changed = {
        "weights": spec_folder(tone_corpus, tmp_path, seed=1),
        "layers": spec_folder(tone_corpus, tmp_path, featurizer=LastLayer),
        "pooled": spec_folder(tone_corpus, tmp_path, pooled=False),
        "dtype": spec_folder(tone_corpus, tmp_path, dtype="float16"),
        "cropping": spec_folder(tone_corpus, tmp_path, max_samples=1000),
    }
    for name, k in changed.items():
        assert k != base, name


def test_a_touched_audio_file_is_encoded_again(tone_corpus, tmp_path):
    stored(tone_corpus, tmp_path)
    wav = next((tone_corpus["test"].parent / "audio").glob("*_s3_0.wav"))
    st = os.stat(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, _, fs, _ = stored(tone_corpus, tmp_path)
    assert fs.encoded == [1]


def test_pooled_and_frame_features_give_the_same_probe_logits(tone_corpus, tmp_path):
    """Exact claim: mean pooling before a linear map commutes with the weighted layer sum."""
    _, pooled, fs, bb = stored(tone_corpus, tmp_path / "p")
    _, frames, _, _ = stored(tone_corpus, tmp_path / "f", pooled=False, bb=bb)
    task = probe(fs.backbone)
    with torch.no_grad():
        task.featurizer.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    bp, bf = first_batch(pooled), first_batch(frames)
    assert bp["features"].dim() == 3 and bf["features"].dim() == 4
    with torch.no_grad():
        torch.testing.assert_close(task(bp), task(bf), atol=1e-5, rtol=1e-5)


def test_a_single_layer_featurizer_stores_one_layer(tone_corpus, tmp_path):
    _, fdm, _, bb = stored(tone_corpus, tmp_path, featurizer=LastLayer, pooled=False)
    assert first_batch(fdm)["features"].shape[1] == 1  # (B, 1, T, D): only the layer it reads
    _, all_dm, _, _ = stored(
        tone_corpus, tmp_path / "all", featurizer=LastLayer, pooled=False, bb=bb, layers="all"
    )
    a, b = first_batch(fdm)["features"], first_batch(all_dm)["features"]
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # all layers stored, the featurizer's one served


def test_new_split_of_stored_clips_costs_no_backbone_time(tone_corpus, tmp_path, monkeypatch):
    """A different split (new speakers, a label-budget subset) is served from clips already stored."""
    _, fdm, _, bb = stored(tone_corpus, tmp_path)
    ds = fdm.datasets["test"]
    expected = {e.audio_filepath: ds[j]["features"] for j, e in enumerate(ds.entries)}
    monkeypatch.setattr("asr_transfer.features.stage.encode", _no_backbone)
    swapped = {"train": tone_corpus["test"], "val": tone_corpus["val"], "test": tone_corpus["train"]}
    _, fdm2, fs, _ = stored(swapped, tmp_path, bb=bb)
    assert fs.encoded == [0]
    train = fdm2.datasets["train"]
    for j, e in enumerate(train.entries):
        torch.testing.assert_close(train[j]["features"], expected[e.audio_filepath], atol=0, rtol=0)


def test_encode_device_is_the_gpu_the_trainer_will_use(monkeypatch):
    from omegaconf import OmegaConf

    from asr_transfer.utils.devices import cache_device

    def dev(cuda: bool, rank: int = 0, **trainer):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        return cache_device(OmegaConf.create(trainer))

    assert dev(False, accelerator="auto") == torch.device("cpu")  # no GPU: the CPU, whatever is asked
    assert dev(True, accelerator="cpu") == torch.device("cpu")  # trainer=cpu on a GPU box stays on CPU
    assert dev(True, accelerator="auto") == torch.device("cuda", 0)
    assert dev(True, rank=1, accelerator="gpu", devices=2) == torch.device("cuda", 1)  # DDP rank 1
    assert dev(True, rank=1, accelerator="gpu", devices=[2, 3]) == torch.device("cuda", 3)
    assert dev(True, accelerator="cuda", devices="1,2") == torch.device("cuda", 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encoding_on_gpu_matches_cpu(tone_corpus, tmp_path):
    _, cpu, _, bb = stored(tone_corpus, tmp_path / "cpu")
    _, gpu, _, _ = stored(tone_corpus, tmp_path / "gpu", bb=bb, device=torch.device("cuda"))
    # fp32 on both; GPU kernels sum in another order (TF32 is off by default for matmuls)
    torch.testing.assert_close(
        first_batch(gpu)["features"], first_batch(cpu)["features"], atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("pooled", [True, False])
def test_the_estimate_is_what_the_pass_writes(tone_corpus, tmp_path, pooled):
    """check_data.py prints this estimate before a run: pooled vectors exactly, frames from durations."""
    dm, bb = audio_dm(tone_corpus), backbone()
    stage, layers = FeatureStore(str(tmp_path / "features"), dtype="float32"), list(range(bb.num_layers))
    before = stage.estimate(bb, dm.datasets, layers, pooled)
    fs = stage.run(dm.datasets, bb, layers, pooled, build=lambda: bb)
    written = json.loads((Path(fs.folder) / "passes.jsonl").read_text().splitlines()[0])["bytes"]
    assert (before["clips"], before["stored"]) == (48, 0)
    assert before["bytes"] == pytest.approx(written, rel=0.0 if pooled else 0.05)
    assert stage.estimate(bb, dm.datasets, layers, pooled) == {"clips": 0, "bytes": 0, "stored": 48}
