"""Layer-wise probing from one cache, and FSDD's speaker-identity labels."""

from __future__ import annotations

import csv

import pytest

from asr_transfer.data.corpora.fsdd import FSDD
from asr_transfer.pipeline.layerwise import run
from asr_transfer.report.render import write_report
from tests.conftest import TINY_WHISPER, tone, tone_overrides, write_wav


def test_layerwise_rows_weights_and_report(tmp_path, tone_corpus):
    out = tmp_path / "layers"
    rows = run(
        [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "probe.l2_grid=[1e-3,1e-1]"], out
    )
    # the tiny Whisper has 3 hidden states (input + 2 layers): 3 single layers, the sum and the concat
    assert [r["layer"] for r in rows] == ["0", "1", "2", "weighted_sum", "concat"]
    weights = [r["weight"] for r in rows[:3]]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3) and all(r["weight"] == "" for r in rows[3:])
    assert all(r["l2"] in (1e-3, 1e-1) for r in rows)
    table = list(csv.DictReader(open(out / "layers.csv")))
    assert list(table[0]) == [
        "layer",
        "l2",
        "seconds",
        "val/acc",
        "test/acc",
        "weight",
        "silhouette_label",
        "silhouette_speaker",
    ]
    for key in ("silhouette_label", "silhouette_speaker"):  # speaker: train's s0 and s1 (val, test: one each)
        assert all(-1 <= float(r[key]) <= 1 for r in table[:3]) and table[3][key] == ""
    assert (out / "layers.png").stat().st_size > 1000
    html = write_report(out).read_text()
    assert "layer-wise probe" in html and html.count("data:image/png;base64,") == 2  # curve + weights


def test_fsdd_speaker_labels_split_by_recording(tmp_path):
    for digit in range(2):
        for spk in ("ann", "bob"):
            for i in range(12):
                write_wav(tmp_path / "rec" / f"{digit}_{spk}_{i}.wav", tone(0.2, 8000, 400, i), 8000)
    splits = FSDD(root=str(tmp_path / "rec"), manifest_dir=str(tmp_path / "m"), label="speaker").build()
    assert {r["label"] for s in splits.values() for r in s} == {"ann", "bob"}
    assert {r["utt_index"] for r in splits["test"]} == set(range(5))
    assert {r["utt_index"] for r in splits["val"]} == set(range(5, 10))
    assert len(splits["train"]) == 2 * 2 * 2  # indices 10, 11 of each digit and speaker
    with pytest.raises(ValueError, match="data.corpus.test_speakers=\\[\\]"):
        FSDD(root=str(tmp_path / "rec"), test_speakers=["bob"], label="speaker").build()


def test_silhouettes_say_whether_a_layer_clusters_by_class_or_by_speaker():
    """Layer 0 separates the classes, layer 1 the speakers: the two columns say which. The speaker
    score comes from train, the one split here with several speakers (test holds one)."""
    import torch

    from asr_transfer.pipeline.layerwise import SplitFeatures, add_silhouettes

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    speakers = ["a" if i < 20 else "b" for i in range(40)]
    x = 0.1 * torch.randn(40, 2, 4, generator=g)
    x[:, 0, 0] += 3.0 * labels  # layer 0: the class
    x[:, 1, 1] += 3.0 * torch.tensor([s == "a" for s in speakers]).float()  # layer 1: the speaker
    splits = {
        "train": SplitFeatures(x, labels, speakers=speakers),
        "test": SplitFeatures(x, labels, speakers=["c"] * 40),
    }
    rows = [{"layer": "0"}, {"layer": "1"}, {"layer": "concat"}]
    add_silhouettes(rows, splits)
    assert rows[0]["silhouette_label"] > 0.5 and rows[0]["silhouette_speaker"] < 0.2
    assert rows[1]["silhouette_speaker"] > 0.5 and rows[1]["silhouette_label"] < 0.2
    assert rows[2]["silhouette_label"] == rows[2]["silhouette_speaker"] == ""
