"""Speech Commands: SUPERB's protocol, _silence_ windows, all words, unknown fraction, root layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_transfer.data.corpora.speech_commands import (
    SILENCE,
    UNKNOWN,
    SpeechCommands,
)
from asr_transfer.data.datamodule import AudioDataModule
from tests.data.test_datamodule import rows
from tests.fakes import SC_WORDS, fake_speech_commands


@pytest.fixture(scope="module")
def sc_root(tmp_path_factory) -> Path:
    return fake_speech_commands(tmp_path_factory.mktemp("sc") / "speech_commands_v0.02")


# ----- Speech Commands -----------------------------------------------------------------------------------
def test_speech_commands_superb_protocol(sc_root, tmp_path):
    corpus = SpeechCommands(str(sc_root), manifest_dir=str(tmp_path))
    dm = AudioDataModule(corpus=corpus, sample_rate=16000, batch_size=64)
    dm.setup()
    assert dm.labels == [
        "yes",
        "no",
        "up",
        "down",
        "left",
        "right",
        "on",
        "off",
        "stop",
        "go",
        UNKNOWN,
        SILENCE,
    ]
    by_split = {s: dm.entries[s] for s in ("train", "val", "test")}
    # the official lists decide val/test; every other clip trains
    listed = {
        s: set((sc_root / f).read_text().split())
        for s, f in (("val", "validation_list.txt"), ("test", "testing_list.txt"))
    }
    for split in ("val", "test"):
        words = {
            str(Path(e.audio_filepath).relative_to(sc_root)) for e in by_split[split] if e.label != SILENCE
        }
        assert words == listed[split]
    assert Counter(e.label for e in by_split["train"] if e.label not in (UNKNOWN, SILENCE)) == {
        w: 3 for w in SC_WORDS[:10]
    }
    # words outside the 10 keywords are _unknown_
    for e in (e for s in by_split.values() for e in s):
        word = Path(e.audio_filepath).parent.name
        if word in ("cat", "tree"):
            assert e.label == UNKNOWN
    assert Counter(e.label for e in by_split["train"])[UNKNOWN] == 6
    # _silence_: 1 s windows every 0.5 s of 2 x 10 s noise, in 8 s / 1 s / 1 s regions per file
    silence = {s: [e for e in by_split[s] if e.label == SILENCE] for s in by_split}
    assert [len(silence[s]) for s in ("train", "val", "test")] == [2 * 15, 2 * 1, 2 * 1]
    clip = silence["val"][0]
    data, sr = sf.read(clip.audio_filepath, dtype="float32")
    src, _ = sf.read(sc_root / "_background_noise_" / f"{clip.speaker}.wav", dtype="float32")
    assert sr == 16000 and data.shape == (16000,)
    start = int(0.8 * len(src))
    np.testing.assert_array_equal(data, src[start : start + 16000])  # an exact slice of the val region
    # a batch carries every class id the labels name
    batch = next(iter(dm.loader("train")))
    assert batch["labels"].max() < 12 and len(dm.labels) == 12


def test_speech_commands_silence_is_written_once(sc_root, tmp_path):
    first = SpeechCommands(str(sc_root), manifest_dir=str(tmp_path / "a")).prepare()
    sil = [r["audio_filepath"] for r in rows(first["train"]) if r["label"] == SILENCE]
    mtimes = [Path(f).stat().st_mtime_ns for f in sil]
    # other manifest settings (unknown_fraction) write new manifests, but the same silence settings
    # find every clip already there and do not rewrite it
    again = SpeechCommands(str(sc_root), manifest_dir=str(tmp_path / "a"), unknown_fraction=1.0).prepare()
    assert sorted(r["audio_filepath"] for r in rows(again["train"]) if r["label"] == SILENCE) == sorted(sil)
    assert [Path(f).stat().st_mtime_ns for f in sil] == mtimes
    assert not list(Path(sil[0]).parent.glob(".*"))  # no temp files left behind


def test_speech_commands_all_words_and_unknown_fraction(sc_root, tmp_path):
    corpus = SpeechCommands(str(sc_root), classes="all", manifest_dir=str(tmp_path))
    dm = AudioDataModule(corpus=corpus, sample_rate=16000)
    dm.setup()
    assert dm.labels == sorted(SC_WORDS) and len(dm.labels) == 12
    assert all(e.label not in (UNKNOWN, SILENCE) for s in dm.entries.values() for e in s)

    def unknown(seed):
        c = SpeechCommands(
            str(sc_root), unknown_fraction=0.1, split_seed=seed, manifest_dir=str(tmp_path / f"u{seed}")
        )
        return [r["audio_filepath"] for r in rows(c.prepare()["train"]) if r["label"] == UNKNOWN]

    assert len(unknown(0)) == 3 and unknown(0) == unknown(0)  # 0.1 x 30 keyword clips, same per seed
    with pytest.raises(ValueError, match=r"data.corpus.classes: \['banana'\]"):
        SpeechCommands(str(sc_root), classes=["yes", "banana"], manifest_dir=str(tmp_path / "bad")).prepare()
    with pytest.raises(ValueError, match="data.corpus.version"):
        SpeechCommands(str(sc_root), version="v3")
    with pytest.raises(FileNotFoundError, match="data.corpus.root"):
        SpeechCommands(str(tmp_path / "empty"), manifest_dir=str(tmp_path)).prepare()


def test_speech_commands_root_may_be_the_download_parent(sc_root, tmp_path):
    """``data.corpus.root`` may point above the version folder, as torchaudio extracts it."""
    parent = tmp_path / "dl"
    (parent / "SpeechCommands").mkdir(parents=True)
    (parent / "SpeechCommands" / "speech_commands_v0.02").symlink_to(sc_root)
    paths = SpeechCommands(str(parent), manifest_dir=str(tmp_path / "m")).prepare()
    assert len(rows(paths["val"])) == 12 + 2
