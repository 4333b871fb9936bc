"""The torch/torchaudio guard: a mismatch stops at import with both versions and the fix."""

import subprocess
import sys

import pytest

from asr_transfer.utils.versions import check_torch_family


def test_matching_releases_pass_whatever_the_build_tag():
    check_torch_family("2.11.0+cu130", "2.11.0")
    check_torch_family("2.11.0", "2.11.0+cpu")


def test_mismatch_names_both_versions_and_the_fix():
    with pytest.raises(ImportError) as err:
        check_torch_family("2.11.0", "2.11.1")
    message = str(err.value)
    assert "torchaudio 2.11.1" in message and "torch 2.11.0" in message
    assert "pip install torchaudio==2.11.0" in message and "requirements.lock" in message


def test_importing_the_package_runs_the_guard_before_torchaudio_loads():
    fake = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda name: '2.11.1' if name == 'torchaudio' else real(name); "
        "import asr_transfer"
    )
    done = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "ImportError: torchaudio 2.11.1 does not match torch" in done.stderr
    assert "undefined symbol" not in done.stderr
