"""Our backbones against the libraries' own encoders, on the tiny random models of tests/presets.py.

Each backbone runs the library's modules layer by layer itself (to return every hidden state, mask
padding, skip Whisper's 30 s window); these tests compare that with the library's own entry point
on the same weights: torchaudio's ``extract_features``, transformers' ``output_hidden_states=True``
and Whisper's 30 s ``WhisperEncoder``. Tolerance: docs/concepts/backbones.md (1e-5).
"""

from __future__ import annotations

import pytest
import torch

from asr_transfer.backbones.whisper import WhisperEncoderBackbone
from tests.conftest import FSDD_DIR, WHISPER_DIR
from tests.presets import BACKBONES, WHISPER_TINY, audio_batch

CLIP = FSDD_DIR / "recordings" / "3_george_0.wav"
TOL = 1e-5  # docs/concepts/backbones.md: "agree to 1e-5"


def _valid(frames_a, frames_b, frames) -> float:
    """max |a - b| over each clip's valid frames."""
    return max(float((frames_a[k, :n] - frames_b[k, :n]).abs().max()) for k, n in enumerate(frames.tolist()))


@pytest.mark.parametrize("name", [n for n in BACKBONES if n.startswith("ta_")])
def test_torchaudio_layer_by_layer_equals_extract_features(name):
    """hidden[i + 1] is torchaudio's layer i output; the last is ``model(...)``'s (pre-LN: layer normed)."""
    torch.manual_seed(0)
    b = BACKBONES[name]().eval()
    wavs, lengths = audio_batch(0.5, 1.0)
    if b.is_wavlm:  # torchaudio's WavLM asserts attention_mask is None: it takes no lengths, one clip
        wavs, lengths = wavs[:1, : lengths[0]], lengths[:1]
    x = b.normalize(wavs, lengths) if b.normalize_waveform else wavs
    with torch.no_grad():
        ours, frames = b(wavs, lengths)
        their_lengths = None if b.is_wavlm else lengths
        theirs, their_frames = b.model.extract_features(x, their_lengths)
        final, _ = b.model(x, their_lengths)
    assert len(ours) == len(theirs) + 1 == b.num_layers
    if their_frames is not None:
        assert torch.equal(their_frames, frames)
    for i, t in enumerate(theirs[:-1]):
        assert _valid(ours[i + 1], t, frames) <= TOL, f"layer {i}"
    last = b.model.encoder.transformer.layer_norm(theirs[-1]) if b.final_layer_norm else theirs[-1]
    assert _valid(ours[-1], last, frames) <= TOL and _valid(ours[-1], final, frames) <= TOL


@pytest.mark.parametrize("name", [n for n in BACKBONES if n.startswith("hf_")])
def test_hf_backbone_equals_output_hidden_states(name):
    """Our states equal the model's ``output_hidden_states=True`` run on its own feature extractor's
    input; the last one is ``last_hidden_state`` (stable-layer-norm models: after the final norm).
    Group-norm models take no attention mask, so (as in HF) each clip is its own batch."""
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    b = BACKBONES[name]().eval()
    fe = Wav2Vec2FeatureExtractor(
        do_normalize=b.normalize_waveform, return_attention_mask=b.use_attention_mask
    )
    wavs, lengths = audio_batch(0.5, 1.0)
    batches = (
        [(wavs, lengths)]
        if b.use_attention_mask
        else [(wavs[k : k + 1, :n], lengths[k : k + 1]) for k, n in enumerate(lengths.tolist())]
    )
    for w, n in batches:
        clips = [w[k, :m].numpy() for k, m in enumerate(n.tolist())]
        inputs = fe(clips, sampling_rate=16000, padding=True, return_tensors="pt")
        with torch.no_grad():
            ours, frames = b(w, n)
            ref = b.model(
                inputs.input_values, attention_mask=inputs.get("attention_mask"), output_hidden_states=True
            )
        assert len(ours) == len(ref.hidden_states) == b.num_layers
        for i, t in enumerate(ref.hidden_states[:-1]):
            assert _valid(ours[i], t, frames) <= TOL, f"hidden[{i}]"
        assert _valid(ours[-1], ref.last_hidden_state, frames) <= TOL


def test_whisper_pad_to_30s_equals_hf_whisper_encoder():
    """pad_to_30s=true: the clips' frames equal HF's WhisperEncoder on WhisperFeatureExtractor's 30 s input."""
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(0)
    b = WhisperEncoderBackbone(pretrained=False, config_overrides=WHISPER_TINY, pad_to_30s=True).eval()
    wavs, lengths = audio_batch(0.5, 1.0)
    clips = [wavs[k, :n].numpy() for k, n in enumerate(lengths.tolist())]
    feats = WhisperFeatureExtractor(feature_size=80)(
        clips, sampling_rate=16000, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        ref = b.model(feats, output_hidden_states=True)
        ours, frames = b(wavs, lengths)
    assert feats.shape[-1] == 3000 and frames.tolist() == [25, 50]
    assert len(ours) == len(ref.hidden_states) == b.num_layers
    for i, t in enumerate(ref.hidden_states):
        assert _valid(ours[i], t, frames) <= TOL, f"hidden[{i}]"
    assert _valid(ours[-1], ref.last_hidden_state, frames) <= TOL


@pytest.mark.shared
@pytest.mark.skipif(
    not (WHISPER_DIR.exists() and CLIP.exists()), reason="needs ../shared whisper-tiny.en and fsdd"
)
def test_whisper_tiny_matches_hf_encoder():
    import soundfile as sf
    import torchaudio
    from transformers import WhisperFeatureExtractor, WhisperModel

    wav, sr = sf.read(CLIP, dtype="float32")
    wav = torchaudio.functional.resample(torch.from_numpy(wav), sr, 16000)
    fe = WhisperFeatureExtractor.from_pretrained(WHISPER_DIR)
    feats = fe(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_features  # (1, 80, 3000)
    encoder = WhisperModel.from_pretrained(WHISPER_DIR).get_encoder().eval()
    with torch.no_grad():
        ref = encoder(feats, output_hidden_states=True).hidden_states  # measured: bitwise equal to ours

    wavs, lengths = wav[None], torch.tensor([len(wav)])
    padded, pframes = WhisperEncoderBackbone(str(WHISPER_DIR), pad_to_30s=True).eval()(wavs, lengths)
    assert len(padded) == len(ref)
    n = int(pframes[0])
    for ours, theirs in zip(padded, ref):  # the clip's own frames of the 30 s window, bitwise
        assert ours.shape[1] == n
        torch.testing.assert_close(ours, theirs[:, :n], atol=1e-4, rtol=0)

    # Real length (0.5 s clip: 25 frames instead of 1500). Not equal to the 30 s run: attention
    # sees 25 frames instead of 1500, so the states drift apart layer by layer. Measured on this
    # clip over the first n-2 frames (mean |value| ~0.7 in every layer):
    #   hidden[0] max |diff| 7e-6 (the conv front end agrees away from the clip's end);
    #   layers 1..4 mean |diff| 0.10, 0.15, 0.26, 0.59; cosine of the mean-pooled last state 0.83.
    short, frames = WhisperEncoderBackbone(str(WHISPER_DIR), min_window_s=0.0).eval()(wavs, lengths)
    assert int(frames[0]) == n == short[0].shape[1] < ref[0].shape[1] // 10
    torch.testing.assert_close(short[0][0, : n - 2], padded[0][0, : n - 2], atol=1e-4, rtol=0)
