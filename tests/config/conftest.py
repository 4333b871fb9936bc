"""The generated corpora the config tests build their data from (made once for the package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import data_forms
from tests.conftest import write_tone_corpus
from tests.fakes import fake_folder, fake_fsdd, fake_librispeech, fake_speech_commands


@pytest.fixture(scope="package")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Generated stand-ins for each corpus layout (shared by every config test)."""
    root = tmp_path_factory.mktemp("assets")
    tones = write_tone_corpus(root / "tones", per_class=3)
    return {
        "tones": tones,
        "fsdd": fake_fsdd(root / "fsdd", per_digit=1),
        "folder": fake_folder(root / "folder"),
        "speech_commands": fake_speech_commands(root / "sc", per_word=3, noise_seconds=3.0),
        "librispeech": _librispeech(root / "ls"),
        "hf": data_forms.save_to_disk(tones, root / "hf"),
        "lhotse": data_forms.lhotse_cutsets(tones, root / "lhotse"),
    }


def _librispeech(root: Path) -> Path:
    fake_librispeech(root)
    return root
