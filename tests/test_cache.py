"""The frozen-feature cache: faithful, keyed by everything that changes features, crash-safe."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch

from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from asr_transfer.data.cache import FeatureCache
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.featurizers import LastLayer, WeightedSum
from asr_transfer.heads import LinearHead, masked_mean
from asr_transfer.tasks.classification import ClassificationTask
from tests.conftest import TINY_WHISPER_CONFIG

TINY = TINY_WHISPER_CONFIG


def backbone(seed=0):
    torch.manual_seed(seed)
    return WhisperEncoderBackbone(pretrained=False, config_overrides=TINY)


def setup(corpus, tmp_path, featurizer=WeightedSum, seed=0, head=LinearHead):
    dm = AudioDataModule(corpus["train"], corpus["val"], corpus["test"], cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    task = ClassificationTask(
        backbone(seed),
        partial(featurizer),
        partial(head),
        partial(torch.optim.AdamW),
        num_classes=dm.num_classes,
        labels=dm.labels,
    )
    return dm, task


def first_batch(dm, split="test"):
    return next(iter(dm.loader(split)))


def test_cache_returns_what_the_backbone_computes(tone_corpus, tmp_path):
    dm, task = setup(tone_corpus, tmp_path)
    raw = first_batch(dm)
    with torch.no_grad():
        hidden, flens = task.backbone(raw["wavs"], raw["lengths"])
        expected = torch.stack([masked_mean(h, flens) for h in hidden], dim=1)  # (B, L, D)
    cache = FeatureCache(tmp_path / "cache", dtype="float32")
    cache.attach(dm, task)
    assert cache.hits == {"train": False, "val": False, "test": False}
    cached = first_batch(dm)
    assert cached["index"].tolist() == raw["index"].tolist()
    # float32 storage: identical up to batch-composition rounding (measured ~1e-6)
    torch.testing.assert_close(cached["features"], expected, atol=1e-5, rtol=1e-5)
    dm16, task16 = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "cache16", dtype="float16").attach(dm16, task16)
    torch.testing.assert_close(first_batch(dm16)["features"], expected, atol=2e-3, rtol=2e-3)  # fp16 rounding


def test_second_attach_hits(tone_corpus, tmp_path):
    dm, task = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "cache").attach(dm, task)
    dm2, task2 = setup(tone_corpus, tmp_path)
    c2 = FeatureCache(tmp_path / "cache")
    c2.attach(dm2, task2)
    assert c2.hits == {"train": True, "val": True, "test": True}


def key_of(corpus, tmp_path, **kw):
    dm, task = setup(corpus, tmp_path, featurizer=kw.pop("featurizer", WeightedSum), seed=kw.pop("seed", 0))
    cache = FeatureCache(tmp_path / "cache", dtype=kw.pop("dtype", "float32"))
    ds = dm.datasets["test"]
    if "max_samples" in kw:
        ds.max_samples = kw.pop("max_samples")
    return cache.key(task.backbone, task.featurizer.layers_used(), kw.pop("pooled", True), ds)


def test_key_changes_with_every_ingredient(tone_corpus, tmp_path):
    base = key_of(tone_corpus, tmp_path)
    assert key_of(tone_corpus, tmp_path) == base
    changed = {
        "weights": key_of(tone_corpus, tmp_path, seed=1),
        "layers": key_of(tone_corpus, tmp_path, featurizer=LastLayer),
        "pooled": key_of(tone_corpus, tmp_path, pooled=False),
        "dtype": key_of(tone_corpus, tmp_path, dtype="float16"),
        "cropping": key_of(tone_corpus, tmp_path, max_samples=1000),
    }
    wav = next((tone_corpus["test"].parent / "audio").glob("*_s3_0.wav"))
    st = os.stat(wav)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched audio file
    changed["audio mtime"] = key_of(tone_corpus, tmp_path)
    for name, k in changed.items():
        assert k != base, name


def test_interrupted_write_is_never_read(tone_corpus, tmp_path, monkeypatch):
    dm, task = setup(tone_corpus, tmp_path)
    real_save = torch.save

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")  # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(tmp_path / "cache").attach(dm, task)
    monkeypatch.setattr(torch, "save", real_save)
    assert not list((tmp_path / "cache").rglob("*.pt"))  # no final file
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no temp file left
    dm2, task2 = setup(tone_corpus, tmp_path)
    c = FeatureCache(tmp_path / "cache")
    c.attach(dm2, task2)
    assert c.hits["train"] is False and len(dm2.datasets["train"]) == len(dm.datasets["train"])


def test_pooled_and_frame_caches_give_the_same_probe_logits(tone_corpus, tmp_path):
    """Exact claim: mean pooling before a linear map commutes with the weighted layer sum."""
    dm_p, task = setup(tone_corpus, tmp_path)
    with torch.no_grad():
        task.featurizer.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    dm_f, _ = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "pooled", dtype="float32").attach(dm_p, task)
    task.head.pools_first = False  # force frames
    FeatureCache(tmp_path / "frames", dtype="float32").attach(dm_f, task)
    task.head.pools_first = True
    bp, bf = first_batch(dm_p), first_batch(dm_f)
    assert bp["features"].dim() == 3 and bf["features"].dim() == 4
    with torch.no_grad():
        torch.testing.assert_close(task(bp), task(bf), atol=1e-5, rtol=1e-5)


def test_new_split_of_cached_clips_costs_no_backbone_time(tone_corpus, tmp_path, monkeypatch):
    """A different split (new speakers, a label-budget subset) is assembled from earlier shards."""
    dm, task = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "cache").attach(dm, task)
    expected = {i: dm.datasets["test"][j]["features"] for j, i in enumerate(dm.datasets["test"].keep)}

    def no_backbone(*a, **k):
        raise AssertionError("the backbone ran although every clip was cached")

    monkeypatch.setattr(FeatureCache, "compute", no_backbone)
    # train on the old test speaker, test on the old training clips: the same clips, new split lists
    swapped = {"train": tone_corpus["test"], "val": tone_corpus["val"], "test": tone_corpus["train"]}
    dm2, task2 = setup(swapped, tmp_path)
    c = FeatureCache(tmp_path / "cache")
    c.attach(dm2, task2)
    assert c.hits == {"train": True, "val": True, "test": True}
    for j, i in enumerate(dm2.datasets["train"].keep):
        torch.testing.assert_close(dm2.datasets["train"][j]["features"], expected[i], atol=0, rtol=0)


def test_cache_device_is_the_gpu_the_trainer_will_use(monkeypatch):
    from omegaconf import OmegaConf

    from asr_transfer.utils.devices import cache_device

    def dev(monkeypatch_cuda: bool, rank: int = 0, **trainer):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: monkeypatch_cuda)
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
def test_cache_pass_on_gpu_matches_cpu_and_returns_the_backbone(tone_corpus, tmp_path):
    dm, task = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "cpu", dtype="float32").attach(dm, task)
    expected = first_batch(dm)["features"]
    dm2, task2 = setup(tone_corpus, tmp_path)
    FeatureCache(tmp_path / "gpu", dtype="float32", device="cuda").attach(dm2, task2)
    assert next(task2.backbone.parameters()).device.type == "cpu"  # back home for Lightning to place
    # fp32 on both; GPU kernels sum in another order (TF32 is off by default for matmuls)
    torch.testing.assert_close(first_batch(dm2)["features"], expected, atol=1e-4, rtol=1e-4)
