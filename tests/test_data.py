"""Each datamodule's splits and batches: FSDD by speaker, manifests (JSONL/CSV, relative paths),
class folders, Speech Commands' protocol; padding, mono, sample rate, label ids; subsets per seed."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_transfer.data.audio import AudioError
from asr_transfer.data.corpora.folder import Folder
from asr_transfer.data.corpora.fsdd import FSDD
from asr_transfer.data.corpora.speech_commands import (
    SILENCE,
    UNKNOWN,
    SpeechCommands,
)
from asr_transfer.data.datamodule import AudioDataModule
from tests.conftest import FSDD_DIR, tone, write_wav
from tests.fakes import SC_WORDS, fake_folder, fake_fsdd, fake_speech_commands


def rows(path: str | None) -> list[dict]:
    return [] if path is None else [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory) -> Path:
    """The real FSDD when ../shared has it, else a generated one with the same naming."""
    if FSDD_DIR.is_dir():
        return FSDD_DIR
    return fake_fsdd(tmp_path_factory.mktemp("fsdd"))


@pytest.fixture(scope="module")
def sc_root(tmp_path_factory) -> Path:
    return fake_speech_commands(tmp_path_factory.mktemp("sc") / "speech_commands_v0.02")


# ----- FSDD ------------------------------------------------------------------------------------------
def test_fsdd_speakers_never_cross_splits(fsdd_root, tmp_path):
    paths = FSDD(str(fsdd_root), ["nicolas"], ["yweweler"], manifest_dir=str(tmp_path)).prepare()
    speakers = {s: {r["speaker"] for r in rows(paths[s])} for s in ("train", "val", "test")}
    assert speakers == {"train": {"george", "jackson"}, "val": {"nicolas"}, "test": {"yweweler"}}
    n_files = len(list(Path(fsdd_root).rglob("*_*_*.wav")))
    all_rows = [r for s in ("train", "val", "test") for r in rows(paths[s])]
    assert len(all_rows) == n_files and len({r["audio_filepath"] for r in all_rows}) == n_files
    for r in all_rows:  # label and speaker are read from the file name
        digit, speaker, _ = Path(r["audio_filepath"]).stem.split("_")
        assert (r["label"], r["speaker"]) == (digit, speaker)

    dm = AudioDataModule(
        corpus=FSDD(str(fsdd_root), ["nicolas"], ["yweweler"], manifest_dir=str(tmp_path)), sample_rate=16000
    )
    dm.setup()
    assert dm.labels == [str(d) for d in range(10)] and dm.num_classes == 10


def test_fsdd_bad_speaker_settings_name_the_key(fsdd_root, tmp_path):
    with pytest.raises(ValueError, match=r"data.corpus.val_speakers: unknown speaker\(s\) \['alice'\]"):
        FSDD(str(fsdd_root), ["alice"], [], manifest_dir=str(tmp_path)).prepare()
    with pytest.raises(ValueError, match="overlap"):
        FSDD(str(fsdd_root), ["george"], ["george"], manifest_dir=str(tmp_path)).prepare()
    with pytest.raises(FileNotFoundError, match="data.corpus.root"):
        FSDD(str(tmp_path), [], [], manifest_dir=str(tmp_path)).prepare()


@pytest.mark.parametrize("corpus", ["fsdd", "folder"])
def test_max_per_class_is_deterministic_per_seed(corpus, tmp_path):
    if corpus == "fsdd":
        root = fake_fsdd(tmp_path / "data", per_digit=3)

        def make(seed, out, k=2):
            corpus = FSDD(str(root), ["nicolas"], ["yweweler"], manifest_dir=str(out))
            return AudioDataModule(corpus=corpus, max_per_class=k, subset_seed=seed)

    else:
        root = fake_folder(tmp_path / "data", per=3)

        def make(seed, out, k=2):
            corpus = Folder(str(root), 0.2, 0.2, manifest_dir=str(out))
            return AudioDataModule(corpus=corpus, max_per_class=k, subset_seed=seed)

    def files(dm, split):
        dm.setup()
        return [e.audio_filepath for e in dm.entries[split]]

    def train_files(seed, out):
        return files(make(seed, tmp_path / out), "train")

    a, again, b = train_files(0, "a"), train_files(0, "again"), train_files(1, "b")
    assert a == again and a != b
    labels = Counter(Path(f).stem.split("_")[0] if corpus == "fsdd" else Path(f).parent.name for f in a)
    assert set(labels.values()) == {2}  # exactly k per class
    # the held-out splits are untouched by the training subset
    assert files(make(0, tmp_path / "full", k=None), "test") == files(make(0, tmp_path / "a"), "test")


# ----- manifests ---------------------------------------------------------------------------------------
def _manifest_rows(root: Path) -> list[dict]:
    out = []
    for k, (label, freq) in enumerate([("a", 300.0), ("b", 900.0)] * 3):
        rel = f"audio/{label}_{k}.wav"
        write_wav(root / rel, tone(0.2 + 0.05 * k, 16000, freq, k), 16000)
        out.append({"audio_filepath": rel, "duration": 0.2 + 0.05 * k, "label": label, "speaker": f"s{k}"})
    return out


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    data = tmp_path / "corpus"
    m = data / "train.jsonl"
    m.parent.mkdir(parents=True)
    m.write_text("".join(json.dumps(r) + "\n" for r in _manifest_rows(data)))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the manifest's folder
    dm = AudioDataModule(train_manifest="../corpus/train.jsonl", sample_rate=16000)
    dm.setup()
    entries = dm.entries["train"]
    assert [e.audio_filepath for e in entries] == [
        str(data.resolve() / r["audio_filepath"]) for r in _manifest_rows(data)
    ]
    assert dm.datasets["train"][0]["wav"].shape == (int(0.2 * 16000),)


def test_csv_manifest_matches_jsonl(tmp_path):
    data_rows = _manifest_rows(tmp_path)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data_rows))
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audio_filepath", "duration", "label", "speaker"])
        w.writeheader()
        w.writerows(data_rows)
    got = {}
    for name in ("m.jsonl", "m.csv"):
        dm = AudioDataModule(train_manifest=str(tmp_path / name), sample_rate=16000)
        dm.setup()
        got[name] = [(e.audio_filepath, e.duration, e.label, e.speaker) for e in dm.entries["train"]]
        assert dm.labels == ["a", "b"]
    assert got["m.csv"] == got["m.jsonl"] and len(got["m.csv"]) == 6


def test_missing_audio_stops_with_path_and_reason(tmp_path):
    m = tmp_path / "train.jsonl"
    m.write_text(json.dumps({"audio_filepath": "gone.wav", "label": "a"}) + "\n")
    dm = AudioDataModule(train_manifest=str(m), sample_rate=16000)
    with pytest.raises(AudioError) as e:
        dm.setup()
    assert e.value.reason == "missing" and str(tmp_path / "gone.wav") in str(e.value)
    assert "train split" in str(e.value) and "line 1" in str(e.value)


# ----- batches ---------------------------------------------------------------------------------------
def test_batches_are_padded_mono_at_the_backbone_rate_with_consistent_labels(tmp_path):
    specs = [  # (label, seconds, file rate, channels)
        ("low", 0.30, 8000, 1),
        ("high", 0.50, 16000, 2),
        ("low", 0.20, 22050, 2),
        ("high", 0.45, 8000, 1),
    ]
    m_rows = []
    for k, (label, sec, sr, ch) in enumerate(specs):
        f = write_wav(tmp_path / f"{k}.wav", tone(sec, sr, 440.0, k, channels=ch), sr)
        m_rows.append({"audio_filepath": f.name, "label": label})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in m_rows))
    dm = AudioDataModule(train_manifest=str(tmp_path / "train.jsonl"), sample_rate=16000, batch_size=4)
    dm.setup()
    (batch,) = list(dm.train_dataloader())
    assert batch["wavs"].dim() == 2 and batch["wavs"].dtype == torch.float32  # (B, S): mono
    expected_len = {k: int(sec * 16000) for k, (_, sec, _, _) in enumerate(specs)}
    for row, idx in enumerate(batch["index"].tolist()):
        n = int(batch["lengths"][row])
        assert n == expected_len[idx]  # resampled to the backbone's rate
        assert batch["wavs"][row, n:].abs().sum() == 0  # padding is zeros beyond the length
        assert batch["wavs"][row, :n].abs().max() > 0.3
        assert dm.labels[int(batch["labels"][row])] == specs[idx][0]
    assert batch["wavs"].shape[1] == int(batch["lengths"].max())
    # duration was read from the header when the manifest had none
    assert [round(e.duration, 3) for e in dm.entries["train"]] == [s for _, s, _, _ in specs]


# ----- class folders -----------------------------------------------------------------------------------
def test_folder_stratified_split_is_deterministic(tmp_path):
    root = fake_folder(tmp_path / "data")  # 3 classes x 10 files

    def prepare(seed, out):
        return {
            s: rows(p)
            for s, p in Folder(str(root), 0.2, 0.1, split_seed=seed, manifest_dir=str(tmp_path / out))
            .prepare()
            .items()
        }

    a = prepare(0, "a")
    for split, n in (("train", 7), ("val", 2), ("test", 1)):
        assert Counter(r["label"] for r in a[split]) == {"bird": n, "cat": n, "dog": n}
    files = [r["audio_filepath"] for s in a.values() for r in s]
    assert len(files) == len(set(files)) == 30
    assert prepare(0, "again") == a and prepare(1, "b")["test"] != a["test"]

    dm = AudioDataModule(
        corpus=Folder(str(root), 0.2, 0.1, manifest_dir=str(tmp_path / "a")), sample_rate=16000
    )
    dm.setup()
    assert dm.labels == ["bird", "cat", "dog"] and len(dm.datasets["val"]) == 6


def test_folder_speaker_regex_keeps_speakers_in_one_split(tmp_path):
    root = fake_folder(tmp_path / "data")
    paths = Folder(str(root), 0.2, 0.2, speaker_regex=r"^([a-z]+)_", manifest_dir=str(tmp_path)).prepare()
    speakers = {s: {r["speaker"] for r in rows(p)} for s, p in paths.items()}
    assert [len(speakers[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert set().union(*speakers.values()) == {"ann", "bob", "cy", "dee", "eve"}
    assert not (
        speakers["train"] & speakers["val"]
        or speakers["train"] & speakers["test"]
        or speakers["val"] & speakers["test"]
    )
    with pytest.raises(ValueError, match="data.corpus.speaker_regex"):
        Folder(str(root), speaker_regex=r"^zzz(\d)", manifest_dir=str(tmp_path / "x")).prepare()


def test_folder_existing_split_folders_are_kept(tmp_path):
    for split in ("train", "val", "test"):
        fake_folder(tmp_path / "data" / split, classes=("x", "y"), speakers=(split,), per=2)
    paths = Folder(str(tmp_path / "data"), 0.3, 0.3, manifest_dir=str(tmp_path)).prepare()
    for split in ("train", "val", "test"):
        got = rows(paths[split])
        assert len(got) == 4 and all(f"/{split}/" in r["audio_filepath"] for r in got)


def test_folder_bad_settings_name_the_key(tmp_path):
    root = fake_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="data.corpus.val_fraction"):
        Folder(str(root), val_fraction=1.5)
    with pytest.raises(ValueError, match="leaves nothing to train"):
        Folder(str(root), 0.5, 0.5)
    with pytest.raises(FileNotFoundError, match="data.corpus.root"):
        Folder(str(tmp_path / "nope"))


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
    assert batch["labels"].max() < 12 and dm.num_classes == 12


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
    assert dm.labels == sorted(SC_WORDS) and dm.num_classes == 12
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
