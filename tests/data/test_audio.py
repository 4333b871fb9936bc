"""Audio loading: every bad file gets its reason and a fix; every odd-but-valid file loads right."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from asr_transfer.data.audio import REASONS, AudioError, check_content, check_header, load_audio
from tests.bad_inputs import BAD_CASES, bad_cases, cannot_make, odd_cases, resample
from tests.conftest import tone
from tests.presets import TINY_WHISPER_CONFIG

SR = 16000


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return tone(0.5, SR, 440.0, seed=3)


@pytest.fixture(scope="module")
def bad(tmp_path_factory, source):
    return {c.name: c for c in bad_cases(tmp_path_factory.mktemp("bad"), source, SR)}


@pytest.fixture(scope="module")
def odd(tmp_path_factory, source):
    return {c.name: c for c in odd_cases(tmp_path_factory.mktemp("odd"), source, SR)}


def test_corpus_has_every_case(bad, odd):
    """Every bad case is written except those this process cannot make (said by the next test)."""
    assert len(bad) == BAD_CASES - len(cannot_make()) and not set(bad) & set(cannot_make())
    assert len(odd) == 22


def test_unreadable_file_case(bad):
    if "no read permission" in cannot_make():
        pytest.skip(f"bad case 'no read permission' not made: {cannot_make()['no read permission']}")
    assert bad["no read permission"].reason == "permission"


def test_every_bad_file_gets_its_reason_path_and_fix(bad):
    for case in bad.values():
        with pytest.raises(AudioError) as e:
            check_content(str(case.path))
        assert e.value.reason == case.reason, case.name
        assert str(case.path) in str(e.value) and REASONS[case.reason] in str(e.value), case.name
        if case.stage == "decode":  # a run's decoder finds the same reason (header faults stop earlier)
            with pytest.raises(AudioError) as e:
                load_audio(str(case.path), SR)
            assert e.value.reason == case.reason, case.name


def test_header_check_finds_header_faults_without_decoding(bad):
    for case in bad.values():
        if case.stage == "header":
            with pytest.raises(AudioError) as e:
                check_header(str(case.path))
            assert e.value.reason == case.reason, case.name
        else:  # content faults need a decode: the cheap header check lets them through
            assert check_header(str(case.path)).frames > 0, case.name


def test_odd_files_load_as_mono_float_at_the_target_rate(odd, source):
    ref = torch.from_numpy(0.5 * source / np.abs(source).max()).float()
    for case in odd.values():
        wav = load_audio(str(case.path), SR, min_samples=400)
        assert wav.dtype == torch.float32 and wav.dim() == 1, case.name
        assert bool(torch.isfinite(wav).all()), case.name
        assert wav.abs().max() <= 1.0 + 1e-4, case.name
        if case.seconds is not None:
            assert abs(wav.shape[0] - case.seconds * SR) <= 2, (case.name, wav.shape)
        if case.name in ("stereo", "6 channels", "WAV PCM_24", "WAV FLOAT", "FLAC", "upper-case .WAV"):
            assert torch.allclose(wav, ref, atol=1e-4), case.name  # downmix of equal channels = the clip
        if case.name.endswith(" Hz") or case.name in ("WAV PCM_U8", "OGG/Vorbis", "MP3"):
            n = min(len(wav), len(ref))
            corr = np.corrcoef(wav[:n].numpy(), ref[:n].numpy())[0, 1]
            # MP3 adds an encoder delay; everything else keeps the waveform
            assert corr > (0.0 if case.name == "MP3" else 0.95), (case.name, corr)


def test_every_sample_rate_from_8_to_96_khz_resamples_in_tune(tmp_path):
    t = np.arange(int(0.5 * 96000)) / 96000
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000):
        x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
        path = tmp_path / f"{rate}.wav"
        import soundfile as sf

        sf.write(str(path), resample(x, 96000, rate), rate, subtype="FLOAT")
        wav = load_audio(str(path), SR).numpy()
        peak_hz = np.argmax(np.abs(np.fft.rfft(wav))) * SR / len(wav)
        assert abs(peak_hz - 1000.0) < 5.0, (rate, peak_hz)


def test_short_clips_are_zero_padded_to_the_minimum(odd):
    for name in ("5 ms clip", "1 sample"):
        wav = load_audio(str(odd[name].path), SR, min_samples=400)
        assert wav.shape == (400,)
        n = 80 if name == "5 ms clip" else 1
        assert torch.count_nonzero(wav[n + 8 :]) == 0  # resampling rings a few samples at most


def test_long_recording_is_cropped_while_reading(odd, tmp_path):
    """A 60 s, 96 kHz stereo file cropped to 2 s: only ~2 s is ever decoded (tracemalloc sees numpy)."""
    import soundfile as sf

    path = tmp_path / "long96k.wav"
    sf.write(str(path), np.zeros((96000 * 60, 2), np.float32) + 0.1, 96000, subtype="PCM_16")
    full_bytes = 96000 * 60 * 2 * 4
    tracemalloc.start()
    wav = load_audio(str(path), SR, max_samples=2 * SR)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert wav.shape == (2 * SR,)
    assert peak < full_bytes / 10, f"peak {peak / 1e6:.1f} MB vs {full_bytes / 1e6:.1f} MB for a full decode"
    assert load_audio(str(odd["60 s recording"].path), SR, max_samples=30 * SR).shape == (30 * SR,)


def test_offset_reads_from_the_offset(tmp_path):
    import soundfile as sf

    x = np.concatenate([np.zeros(SR, np.float32), np.full(SR, 0.25, np.float32)])
    sf.write(str(tmp_path / "o.wav"), x, SR, subtype="FLOAT")
    wav = load_audio(str(tmp_path / "o.wav"), SR, offset=1.0)
    assert wav.shape == (SR,) and torch.allclose(wav, torch.full((SR,), 0.25))
    with pytest.raises(AudioError) as e:
        load_audio(str(tmp_path / "o.wav"), SR, offset=5.0)
    assert e.value.reason == "zero_samples"


@pytest.mark.parametrize("name", ["all silent", "very quiet (-80 dB)", "clipped", "5 ms clip", "1 sample"])
def test_odd_clips_give_finite_features(odd, name):
    """Normalisation never divides by zero; the Whisper STFT works on padded short clips."""
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    torch.manual_seed(0)
    backbone = WhisperEncoderBackbone(pretrained=False, config_overrides=TINY_WHISPER_CONFIG)
    wav = load_audio(str(odd[name].path), SR, min_samples=400)
    lengths = torch.tensor([wav.shape[0]])
    hidden, frames = backbone(wav[None], lengths)
    assert all(bool(torch.isfinite(h).all()) for h in hidden) and int(frames[0]) >= 1
    normed = backbone.normalize(wav[None], lengths)
    assert bool(torch.isfinite(normed).all())
    if name == "all silent":
        assert torch.count_nonzero(normed) == 0
