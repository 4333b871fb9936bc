"""LibriSpeech and Libri-Light layouts to manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_transfer.data.corpora.librispeech import LibriSpeech
from tests.data.corpora.test_fsdd_digits import _rows
from tests.fakes import fake_librispeech


# ----- LibriSpeech layout ---------------------------------------------------------------------------
@pytest.mark.parametrize("librilight,train_n", [(None, 2), ("10min", 1), ("1h", 2), ("10h", 3)])
def test_librispeech_and_librilight_manifests(tmp_path, librilight, train_n):
    fake_librispeech(tmp_path / "ls")
    corpus = LibriSpeech(
        str(tmp_path / "ls"),
        train_subsets=["dev-clean"],
        val_subsets=["dev-clean"],
        test_subsets=["test-clean"],
        librilight=librilight,
        download=False,
        manifest_dir=str(tmp_path / "m"),
    )
    paths = corpus.prepare()
    train, test = _rows(paths["train"]), _rows(paths["test"])
    assert len(train) == train_n and len(_rows(paths["val"])) == 2
    assert test == [
        {
            "audio_filepath": str(tmp_path / "ls/LibriSpeech/test-clean/61/70968/61-70968-0000.flac"),
            "duration": pytest.approx(0.1),
            "text": "HE BEGAN A CONFUSED COMPLAINT",
            "speaker": "61",
            "chapter": 70968,
            "subset": "test-clean",
        }
    ]
    assert all(Path(r["audio_filepath"]).is_file() for r in train)


def test_librispeech_missing_subset_says_what_to_do(tmp_path):
    corpus = LibriSpeech(
        str(tmp_path), ["train-clean-100"], [], [], download=False, manifest_dir=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match="data.corpus.download=true"):
        corpus.prepare()
