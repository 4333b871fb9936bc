"""Loading faults name the config key and the fix; remote code is never trusted by default."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT


# ----- config and loading faults ----------------------------------------------------------------
def test_missing_local_model_names_the_key(tmp_path):
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    with pytest.raises(FileNotFoundError, match=r"backbone.name_or_path=.*no such local model directory"):
        WhisperEncoderBackbone(name_or_path=str(tmp_path / "no-such-model"))


def test_unreachable_hub_id_names_the_key_and_offline_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import: set it where it is used
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError) as e:
        WhisperEncoderBackbone(name_or_path="nobody/whisper-does-not-exist")
    msg = str(e.value)
    assert "backbone.name_or_path='nobody/whisper-does-not-exist'" in msg
    assert "HF_HUB_OFFLINE" in msg and "--local-dir" in msg


def test_trust_remote_code_is_never_on_by_default():
    import inspect

    from omegaconf import OmegaConf

    for yaml in (ROOT / "conf" / "backbone").glob("*.yaml"):
        assert OmegaConf.load(yaml).get("trust_remote_code", False) is False, yaml
    from asr_transfer.backbones import hf

    for obj in vars(hf).values():
        if (
            inspect.isclass(obj)
            and obj.__module__ == hf.__name__
            and "trust_remote_code" in inspect.signature(obj).parameters
        ):
            assert inspect.signature(obj).parameters["trust_remote_code"].default is False
