"""Adding a corpus is one module and a short YAML: data=tones (asr_transfer/data/corpora/tones.py,
conf/data/tones.yaml) goes through the same datamodule and pipeline as every other corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from asr_transfer.pipeline.build import build_backbone
from tests.conftest import CONF, TINY_WHISPER, audio_datamodule, compose_train


def test_tones_corpus_yaml_is_short_and_extends_the_base():
    lines = (CONF / "data" / "tones.yaml").read_text().splitlines()
    assert len(lines) < 15 and "  - base" in lines


def test_tones_corpus_feeds_the_one_datamodule(tmp_path):
    over = ["data=tones", f"paths.cache_dir={tmp_path / 'cache'}", "data.corpus.per_class=2", *TINY_WHISPER]
    cfg = compose_train(over, tmp_path / "run")
    backbone = build_backbone(cfg)
    dm = audio_datamodule(cfg, backbone)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.labels == ["high", "low", "mid"]  # sorted labels of the training split
    # 2 training speakers, 1 val, 1 test; 2 clips per class and speaker; speakers never cross splits
    assert {s: len(e) for s, e in dm.entries.items()} == {"train": 12, "val": 6, "test": 6}
    speakers = {s: {e.speaker for e in rows} for s, rows in dm.entries.items()}
    assert speakers == {"train": {"s0", "s1"}, "val": {"s2"}, "test": {"s3"}}
    assert Counter(e.label for e in dm.entries["train"]) == {"high": 4, "low": 4, "mid": 4}
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch["wavs"].shape == (12, 8000) and sorted(batch["labels"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    )
    # prepared once: the same settings find the same manifests and audio without writing again
    mtimes = {e.audio_filepath: Path(e.audio_filepath).stat().st_mtime_ns for e in dm.entries["test"]}
    again = audio_datamodule(cfg, backbone)
    assert again.manifests() == dm.manifests()
    again.setup("fit")
    assert {
        e.audio_filepath: Path(e.audio_filepath).stat().st_mtime_ns for e in again.entries["test"]
    } == mtimes
