"""Loading backbones: local folders, unknown names and offline failures say what to do."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.backbones.hf import HFBackbone
from asr_transfer.backbones.torchaudio import TorchaudioBackbone
from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from tests.conftest import SHARED
from tests.presets import BACKBONES, TA_TINY, TINY_WHISPER_CONFIG, WHISPER_TINY, audio_batch

WHISPER_BASE_DIR = SHARED / "models" / "whisper-base"


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


def _whisper_checkpoint(path, **save_kwargs):
    """A random full Whisper (encoder + decoder) saved in HF format: what a hub id resolves to."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    WhisperModel(WhisperConfig(**TINY_WHISPER_CONFIG)).save_pretrained(path, **save_kwargs)
    return WhisperModel.from_pretrained(path).get_encoder().eval()


def _same_encoder(backbone: WhisperEncoderBackbone, reference) -> None:
    got, want = backbone.model.state_dict(), reference.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)  # bit-identical: the same tensors, no decoder
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in got.values())
    wav, lengths = audio_batch(0.7, 0.4)
    states, _ = backbone(wav, lengths)
    assert all(torch.isfinite(s).all() for s in states)


@pytest.mark.parametrize("shards", [False, True], ids=["one-file", "sharded"])
def test_whisper_reads_only_the_encoder_from_a_full_checkpoint(tmp_path, shards):
    reference = _whisper_checkpoint(tmp_path, **({"max_shard_size": "200KB"} if shards else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == shards
    _same_encoder(WhisperEncoderBackbone(str(tmp_path)), reference)


def test_whisper_checkpoint_that_does_not_match_its_config_names_the_path(tmp_path):
    import json

    _whisper_checkpoint(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "encoder_layers": cfg["encoder_layers"] + 1}))
    with pytest.raises(ValueError, match=r"name_or_path=.*missing \['layers\."):
        WhisperEncoderBackbone(str(tmp_path))


@pytest.mark.skipif(not WHISPER_BASE_DIR.is_dir(), reason="../shared/models/whisper-base absent")
def test_encoder_only_whisper_base_loads_without_a_missing_decoder_report(capfd):
    from transformers import WhisperModel

    backbone = WhisperEncoderBackbone(str(WHISPER_BASE_DIR))
    assert "MISSING" not in "".join(capfd.readouterr())
    assert (backbone.num_layers, backbone.hidden_size) == (7, 512)
    _same_encoder(backbone, WhisperModel.from_pretrained(str(WHISPER_BASE_DIR)).get_encoder().eval())
