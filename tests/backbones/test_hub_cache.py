"""``backbone.name_or_path=<hub id>`` through the real hub client, offline: a pre-filled ``HF_HOME`` laid out
as huggingface_hub writes it (``hub/models--org--name/{blobs,snapshots/<sha>,refs/main}``), with
``HF_HUB_OFFLINE=1`` and ``HF_ENDPOINT`` pointing at a loopback server that records any request (none is
made). The torchaudio bundle path goes through torch.hub's real loader with a pre-filled ``TORCH_HOME``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from tests.conftest import WHISPER_DIR, run_python
from tests.loopback import ArchiveServer
from tests.presets import BACKBONES, TA_TINY, audio_batch

SHA = "0123456789abcdef0123456789abcdef01234567"

# In a fresh interpreter: huggingface_hub reads HF_HOME/HF_HUB_OFFLINE/HF_ENDPOINT when it is imported.
# Builds the backbone the way train.py does (composed config, build_backbone) and prints a fingerprint.
LOAD = """
import json, sys, torch
from asr_transfer.pipeline.build import build_backbone
from tests.conftest import compose_train
from tests.presets import audio_batch
cfg = compose_train(sys.argv[2:], __import__("pathlib").Path(sys.argv[1]))
b = build_backbone(cfg).eval()
wavs, lengths = audio_batch(0.5)
with torch.no_grad():
    states, _ = b(wavs, lengths)
print(json.dumps({"name_or_path": cfg.backbone.name_or_path, "params": sum(float(p.double().square().sum()) for p in b.parameters()),
                  "last": float(states[-1].double().abs().sum())}))
"""


def hub_cache(home: Path, repo: str, folder: Path) -> None:
    """``folder``'s files as the hub client caches ``repo``: content-addressed blobs, a snapshot of
    relative symlinks, and ``refs/main`` naming the snapshot."""
    base = home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / SHA
    snap.mkdir(parents=True)
    (base / "blobs").mkdir()
    for f in sorted(folder.iterdir()):
        blob = base / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(SHA)


def load_offline(tmp_path: Path, home: Path, *overrides: str) -> dict:
    with ArchiveServer() as server:
        env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": server.url}
        env["TRANSFORMERS_OFFLINE"] = "1"
        res = run_python("-c", LOAD, tmp_path / "run", *overrides, timeout=300, **env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert server.requests == []  # nothing reached the (loopback) hub
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not WHISPER_DIR.is_dir(), reason="../shared/models/whisper-tiny.en absent")
def test_whisper_hub_id_loads_from_the_hub_cache(tmp_path):
    home = tmp_path / "hf_home"
    hub_cache(home, "openai/whisper-tiny.en", WHISPER_DIR)
    by_id = load_offline(tmp_path, home, "backbone=whisper", "backbone.name_or_path=openai/whisper-tiny.en")
    local = WhisperEncoderBackbone(name_or_path=str(WHISPER_DIR)).eval()  # the same files, by path
    wavs, lengths = audio_batch(0.5)
    with torch.no_grad():
        last = float(local(wavs, lengths)[0][-1].double().abs().sum())
    assert by_id["name_or_path"] == "openai/whisper-tiny.en"
    assert by_id["params"] == sum(float(p.double().square().sum()) for p in local.parameters())
    assert by_id["last"] == pytest.approx(last, rel=1e-6)


def test_wav2vec2_hub_id_loads_from_the_hub_cache(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    src = BACKBONES["hf_wav2vec2_layer"]().eval()
    folder = tmp_path / "saved"
    src.model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False, sampling_rate=16000).save_pretrained(folder)
    home = tmp_path / "hf_home"
    hub_cache(home, "tiny-org/wav2vec2-tiny", folder)
    got = load_offline(tmp_path, home, "backbone=hf", "backbone.name_or_path=tiny-org/wav2vec2-tiny")
    wavs, lengths = audio_batch(0.5)
    with torch.no_grad():
        want = float(src._forward(wavs, lengths)[0][-1].double().abs().sum())
    assert got["name_or_path"] == "tiny-org/wav2vec2-tiny"
    assert got["last"] == pytest.approx(want, rel=1e-6)


def test_a_hub_id_missing_from_the_cache_says_what_to_do(tmp_path):
    with ArchiveServer() as server:
        env = {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": server.url}
        res = run_python(
            "-c", LOAD, tmp_path / "run", "backbone=hf", "backbone.name_or_path=nobody/nothing", **env
        )
        assert server.requests == []
    assert res.returncode != 0
    assert "backbone.name_or_path='nobody/nothing' could not be loaded" in res.stderr
    assert "HF_HUB_OFFLINE is set" in res.stderr


def test_torchaudio_bundle_loads_through_torch_hub_cache(tmp_path, monkeypatch):
    """``bundle._get_state_dict`` -> ``torch.hub.load_state_dict_from_url`` finds the checkpoint file in
    ``$TORCH_HOME/hub/checkpoints`` (as a first download leaves it) and never opens the URL."""
    import torchaudio.pipelines

    from asr_transfer.backbones.torchaudio import TorchaudioBackbone, _build

    bundle = torchaudio.pipelines.HUBERT_BASE
    torch.manual_seed(3)
    reference = _build(bundle._model_type, {**bundle._params, **TA_TINY, "encoder_layer_drop": 0.0})
    ckpt = tmp_path / "torch_home" / "hub" / "checkpoints" / bundle._path.rsplit("/", 1)[-1]
    ckpt.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    b = TorchaudioBackbone("hubert_base", pretrained=True, config_overrides=TA_TINY)
    got, want = b.model.state_dict(), reference.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
