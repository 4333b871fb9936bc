"""Featurizers: ``layer`` reads the chosen state, ``weighted_sum`` (with and without its layer norm) is
the softmax-weighted sum; a cached run equals an uncached one for both."""

from __future__ import annotations

import json

import pytest
import torch

from asr_transfer.featurizers import SingleLayer, WeightedSum
from asr_transfer.heads import LinearHead
from asr_transfer.pipeline.train import train
from asr_transfer.tasks.classification import ClassificationTask
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides
from tests.presets import BACKBONES, audio_batch


def test_single_layer_reads_the_chosen_state_through_the_task():
    torch.manual_seed(0)
    backbone = BACKBONES["whisper"]().eval()
    task = ClassificationTask(
        backbone=backbone,
        featurizer=SingleLayer(backbone.num_layers, backbone.hidden_size, layer=1),
        head=LinearHead,
        optimizer=torch.optim.AdamW,
        num_classes=2,
    )
    assert task.featurizer.layers == [1]
    wavs, lengths = audio_batch(0.5, 1.0)
    rep, frames = task.encode({"wavs": wavs, "lengths": lengths})
    hidden, expected_frames = backbone(wavs, lengths)
    assert torch.equal(rep, hidden[1]) and torch.equal(frames, expected_frames)
    assert SingleLayer(3, 4, layer=-1).layers == [2]
    with pytest.raises(ValueError, match="featurizer.layer=3"):
        SingleLayer(3, 4, layer=3)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_weighted_sum_is_the_softmax_weighted_sum(layer_norm):
    torch.manual_seed(0)
    f = WeightedSum(3, 4, layer_norm=layer_norm)
    with torch.no_grad():
        f.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
    stack = 3 * torch.randn(3, 2, 5, 4) + 1
    w = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    layers = (
        [
            (s - s.mean(-1, keepdim=True)) / torch.sqrt(s.var(-1, unbiased=False, keepdim=True) + 1e-5)
            for s in stack
        ]
        if layer_norm
        else list(stack)
    )
    expected = sum(wi * s for wi, s in zip(w, layers))
    torch.testing.assert_close(f(stack), expected, atol=1e-5, rtol=0)
    assert (
        WeightedSum.is_linear(layer_norm=layer_norm) is not layer_norm
    )  # only a linear one lets the store pool
    with pytest.raises(ValueError, match="expects 3 hidden states, got 2"):
        f(stack[:2])


# minibatch training in both runs (the exact probe needs stored features), stored in float32 (frames
# default to float16 storage)
EXACT = ["~probe", "features.dtype=float32"]


@pytest.mark.parametrize(
    "featurizer",
    [["featurizer=layer", "featurizer.layer=1"], ["featurizer=weighted_sum", "featurizer.layer_norm=true"]],
    ids=["layer", "weighted_sum_layer_norm"],
)
def test_cached_run_equals_uncached_run(tmp_path, tone_corpus, featurizer):
    """The cache (pooled vectors, or frames when the featurizer is not linear) changes no number.
    Found by this test: a layer-normed weighted sum was applied to cached pooled vectors."""
    metrics = {}
    for cache in ("auto", "off"):
        over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, *featurizer, "~logger"]
        train(
            compose_train(
                [*over, f"features.mode={cache}", "trainer.max_epochs=2", "optimizer.lr=0.05", *EXACT],
                tmp_path / cache,
            )
        )
        metrics[cache] = json.loads((tmp_path / cache / "metrics.json").read_text())
    assert set(metrics["auto"]) == set(metrics["off"])
    for key, value in metrics["off"].items():
        if key.startswith("params/"):  # parameter counts: a cached run never builds the frozen weights
            continue
        assert metrics["auto"][key] == pytest.approx(value, abs=1e-5), key
