"""FSDD: speaker-disjoint splits, bad speaker settings, training subsets per seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from asr_transfer.data.corpora.folder import Folder
from asr_transfer.data.corpora.fsdd import FSDD
from asr_transfer.data.datamodule import AudioDataModule
from tests.conftest import FSDD_DIR
from tests.data.test_datamodule import rows
from tests.fakes import fake_folder, fake_fsdd


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory) -> Path:
    """The real FSDD when ../shared has it, else a generated one with the same naming."""
    if FSDD_DIR.is_dir():
        return FSDD_DIR
    return fake_fsdd(tmp_path_factory.mktemp("fsdd"))


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
    assert dm.labels == [str(d) for d in range(10)] and len(dm.labels) == 10


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
