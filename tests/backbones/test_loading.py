"""Loading backbones: local folders, unknown names and offline failures say what to do."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.backbones.hf import HFBackbone
from asr_transfer.backbones.torchaudio import TorchaudioBackbone
from tests.presets import BACKBONES, TA_TINY, WHISPER_TINY, audio_batch


def test_hf_local_folder_roundtrip(tmp_path):
    """A save_pretrained folder loads offline, and its preprocessor config is honoured."""
    from transformers import Wav2Vec2FeatureExtractor

    src = BACKBONES["hf_wav2vec2_layer"]()
    src.model.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=False, sampling_rate=16000).save_pretrained(tmp_path)
    b = HFBackbone(str(tmp_path)).eval()
    assert b.normalize_waveform is False and b.sample_rate == 16000
    assert b.num_layers == 3 and b.config.layerdrop == 0.0
    wavs, lengths = audio_batch(0.5)
    src.eval()
    torch.testing.assert_close(b(wavs, lengths)[0][-1], src._forward(wavs, lengths)[0][-1])


def test_hf_missing_local_path():
    with pytest.raises(FileNotFoundError, match="backbone.name_or_path"):
        HFBackbone("./no/such/model")


def test_hf_rejects_whisper():
    with pytest.raises(ValueError, match="backbone=whisper"):
        HFBackbone("whisper", pretrained=False, model_type="whisper", config_overrides=WHISPER_TINY)


def test_torchaudio_unknown_variant():
    with pytest.raises(ValueError, match="backbone.variant") as e:
        TorchaudioBackbone("wav2vec3", pretrained=False)
    assert "wavlm_base_plus" in str(e.value) and "hubert_large" in str(e.value)


def test_torchaudio_download_failure_says_how_to_work_offline(monkeypatch):
    from urllib.error import URLError

    from torchaudio.pipelines import Wav2Vec2Bundle

    def offline(self, dl_kwargs):
        raise URLError("no network")

    monkeypatch.setattr(Wav2Vec2Bundle, "_get_state_dict", offline)
    with pytest.raises(OSError, match="backbone.variant='hubert_base'.*TORCH_HOME"):
        TorchaudioBackbone("hubert_base", pretrained=True, config_overrides=TA_TINY)
