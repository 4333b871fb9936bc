"""Class folders: stratified or speaker-grouped splits, existing split folders, bad settings."""

from __future__ import annotations

from collections import Counter

import pytest

from asr_transfer.data.corpora.folder import Folder
from asr_transfer.data.datamodule import AudioDataModule
from tests.data.test_datamodule import rows
from tests.fakes import fake_folder


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
