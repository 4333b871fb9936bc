"""The same clips given as JSONL manifests, as a ``save_to_disk`` DatasetDict, as parquet shards with embedded
audio, as an audiofolder with ``metadata.csv`` and as a Lhotse CutSet of offset cuts: each trains and
evaluates to exactly the manifests' test metrics (every form reaches the datamodule as the same manifest)."""

from __future__ import annotations

import json

import pytest

from asr_transfer.pipeline.train import train
from tests import data_forms
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides, write_tone_corpus

RUN = [*TINY_WHISPER, "trainer.max_epochs=2", "optimizer.lr=0.01", "~probe"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


def run(overrides: list[str], out) -> dict:
    train(compose_train([*overrides, *RUN], out))
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def manifest_metrics(tones, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("manifests")
    return run(tone_overrides(tones, tmp / "cache"), tmp / "run")


def hf_overrides(path, cache) -> list[str]:
    common = tone_overrides({"train": "x", "val": "x", "test": "x"}, cache)[4:]  # all but the manifests
    return ["data=hf", f"data.corpus.path={path}", "data.corpus.speaker_column=speaker", *common]


@pytest.mark.parametrize("form", ["save_to_disk", "parquet_shards", "audiofolder", "lhotse_cutsets"])
def test_each_form_trains_to_the_manifests_metrics(form, tones, manifest_metrics, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    made = getattr(data_forms, form)(tones, tmp_path / "data")
    if form == "lhotse_cutsets":
        common = tone_overrides(tones, tmp_path / "cache")[4:]
        splits = [f"data.corpus.{s}={made[s]}" for s in ("train", "val", "test")]
        overrides = ["data=lhotse", *splits, "data.corpus.label_field=label", *common]
    else:
        overrides = hf_overrides(made, tmp_path / "cache")
    metrics = run(overrides, tmp_path / "run")
    test = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert test and test == {k: v for k, v in manifest_metrics.items() if k.startswith("test/")}
    assert metrics["val/acc"] == manifest_metrics["val/acc"]
