"""Waveform augmentation: each transform's effect, determinism, resume, workers, train-only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import DataLoader

import asr_transfer.data.augment as augment_mod
from asr_transfer.data.augment import (
    Gain,
    Noise,
    Reverb,
    Speed,
    WaveformAugment,
    mix_at_snr,
)
from asr_transfer.data.augmented import AugmentedDataset, EpochBatches
from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.data.noise import write_coloured, write_rirs
from asr_transfer.utils.rng import clip_generator
from tests.conftest import tone

SR = 16000


@pytest.fixture
def noise_dir(tmp_path: Path) -> Path:
    write_coloured(
        tmp_path / "noise", seconds=0.5, sample_rate=SR, per_colour=1
    )  # shorter than some clips: tiled
    write_coloured(
        tmp_path / "noise", seconds=5.0, sample_rate=8000, seed=1, per_colour=1
    )  # long, other rate
    return tmp_path / "noise"


@pytest.fixture
def rir_dir(tmp_path: Path) -> Path:
    write_rirs(tmp_path / "rirs", SR)
    return tmp_path / "rirs"


def all_four(noise_dir: Path, rir_dir: Path) -> WaveformAugment:
    return WaveformAugment(
        [Gain(p=0.8), Noise(str(noise_dir), [0, 20]), Speed(p=0.9), Reverb(str(rir_dir), p=0.7)]
    )


def wav(seconds: float = 0.6, freq: float = 440.0) -> torch.Tensor:
    return torch.from_numpy(tone(seconds, SR, freq))


def test_order_is_fixed_whatever_the_config_order(noise_dir, rir_dir):
    assert all_four(noise_dir, rir_dir).names == ["speed", "reverb", "noise", "gain"]


def test_same_seed_epoch_clip_same_output_and_different_epochs_differ(noise_dir, rir_dir):
    aug, x = all_four(noise_dir, rir_dir), wav()
    a, b = aug(x.clone(), 3, 1, 7, SR), aug(x.clone(), 3, 1, 7, SR)
    assert torch.equal(a, b)
    others = [aug(x.clone(), 3, 2, 7, SR), aug(x.clone(), 4, 1, 7, SR), aug(x.clone(), 3, 1, 8, SR)]
    assert all(o.shape != a.shape or not torch.allclose(o, a) for o in others)


def test_draws_do_not_depend_on_the_global_rng(noise_dir, rir_dir):
    aug, x = all_four(noise_dir, rir_dir), wav()
    torch.manual_seed(0)
    a = aug(x.clone(), 0, 0, 0, SR)
    torch.manual_seed(123)
    torch.rand(1000)
    assert torch.equal(a, aug(x.clone(), 0, 0, 0, SR))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch_by_the_factor(factor):
    x = wav(1.0, 500.0)
    y = Speed([factor]).apply(x, {"factor": factor}, SR)
    assert abs(y.shape[0] - x.shape[0] / factor) <= 1
    peak = float(torch.fft.rfft(y).abs().argmax()) * SR / y.shape[0]
    assert peak == pytest.approx(500.0 * factor, abs=2.0)


@pytest.mark.parametrize("memo_seconds", [60, 0])  # whole files kept in memory | long files streamed
def test_noise_snr_within_half_a_db_of_the_draw(noise_dir, memo_seconds, monkeypatch):
    monkeypatch.setattr(augment_mod, "MEMO_SECONDS", memo_seconds)
    aug = Noise(str(noise_dir), [-5, 20])
    x = wav(0.8)
    drawn = []
    for i in range(40):
        params = aug.draw(clip_generator(0, 0, i, "noise"))
        y = aug.apply(x, params, SR)
        measured = 10 * torch.log10(x.pow(2).sum() / (y - x).pow(2).sum())
        assert float(measured) == pytest.approx(params["snr_db"], abs=0.5)
        drawn.append(params["snr_db"])
    assert min(drawn) < 2 and max(drawn) > 13  # draws span the range, not one value


def test_mix_at_snr_exact_and_silence_left_alone():
    x, n = wav(), torch.randn(wav().shape[0])
    y = mix_at_snr(x, n, 0.0)
    assert float((y - x).pow(2).sum()) == pytest.approx(float(x.pow(2).sum()), rel=1e-4)
    assert torch.equal(mix_at_snr(torch.zeros(100), torch.randn(100), 5.0), torch.zeros(100))


def test_gain_scales_by_the_drawn_db():
    x = wav()
    y = Gain([-6, 6]).apply(x, {"gain_db": -6.0}, SR)
    assert float(20 * torch.log10(y.abs().max() / x.abs().max())) == pytest.approx(-6.0, abs=1e-3)


def test_reverb_keeps_length_and_is_the_rir_convolution(rir_dir, tmp_path):
    aug, x = Reverb(str(rir_dir)), wav()
    y = aug.apply(x, {"file": 0}, SR)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # A delayed unit impulse is the identity: the direct path is aligned to t=0, energy normalised.
    (tmp_path / "delta").mkdir()
    sf.write(
        str(tmp_path / "delta" / "d.wav"), np.array([0, 0, 0.5, 0], dtype=np.float32), SR, subtype="FLOAT"
    )
    assert torch.allclose(Reverb(str(tmp_path / "delta")).apply(x, {"file": 0}, SR), x, atol=1e-6)
    # and any other RIR gives the first len(x) samples of the full convolution
    rir = torch.from_numpy(sf.read(aug.files[0], dtype="float32")[0])
    rir = rir[int(rir.abs().argmax()) :]
    assert torch.allclose(y, AF.fftconvolve(x, rir / rir.norm())[: x.shape[0]], atol=1e-5)


def test_missing_or_empty_folder_names_the_key(tmp_path):
    with pytest.raises(ValueError, match="augment.noise_dir is not set"):
        Noise(None)
    with pytest.raises(FileNotFoundError, match="augment.rir_dir="):
        Reverb(str(tmp_path))


def test_counts_replay_the_draws_and_match_p(noise_dir):
    aug = WaveformAugment([Noise(str(noise_dir), p=0.3), Speed([0.9, 1.0, 1.1])])
    counts = aug.counts(seed=0, epochs=2, num_clips=600)
    assert counts["noise"] / 1200 == pytest.approx(0.3, abs=0.04)
    assert counts["speed"] / 1200 == pytest.approx(2 / 3, abs=0.04)  # factor 1.0 is not an augmentation


def batches(dataset, sampler, workers: int) -> list[dict]:
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_batch, num_workers=workers)
    return list(loader)


def test_workers_and_main_process_draw_the_same(noise_dir, rir_dir):
    clips = [{"wav": wav(0.3 + 0.05 * (i % 4), 300 + 50 * i), "index": i} for i in range(12)]

    class Base(list):
        sample_rate = SR

        def __getitem__(self, i):
            return dict(list.__getitem__(self, i))

    ds = AugmentedDataset(Base(clips), all_four(noise_dir, rir_dir), seed=5)
    out = {}
    for workers in (0, 2):
        sampler = LengthBatchSampler([c["wav"].shape[0] for c in clips], batch_size=4, seed=1)
        sampler.set_epoch(3)
        out[workers] = batches(ds, EpochBatches(sampler), workers)
    for a, b in zip(out[0], out[2], strict=True):
        assert torch.equal(a["index"], b["index"])
        # Same draws; the numbers may differ in the last bits because DataLoader workers run torch on one
        # thread and the main process on several (FFT and resampling kernels reduce in another order).
        torch.testing.assert_close(a["wavs"], b["wavs"], rtol=1e-5, atol=1e-6)


def datamodule(corpus: dict, augment) -> AudioDataModule:
    dm = AudioDataModule(
        str(corpus["train"]), str(corpus["val"]), str(corpus["test"]), batch_size=4, augment=augment, seed=2
    )
    dm.setup("fit")
    return dm


def test_exact_on_resume_mid_epoch(tone_corpus, noise_dir, rir_dir):
    aug = all_four(noise_dir, rir_dir)
    loader = datamodule(tone_corpus, aug).train_dataloader()
    loader.batch_sampler.sampler.set_epoch(1)  # what Lightning does at the start of epoch 1
    uninterrupted = list(loader)
    resumed = datamodule(tone_corpus, aug)
    resumed.load_state_dict({"labels": resumed.labels, "train_position": {"epoch": 1, "batches_done": 2}})
    rest = list(resumed.train_dataloader())
    assert len(rest) == len(uninterrupted) - 2
    for a, b in zip(rest, uninterrupted[2:], strict=True):
        assert torch.equal(a["index"], b["index"])
        # Same draws; the numbers may differ in the last bits because DataLoader workers run torch on one
        # thread and the main process on several (FFT and resampling kernels reduce in another order).
        torch.testing.assert_close(a["wavs"], b["wavs"], rtol=1e-5, atol=1e-6)


def test_val_and_test_never_augmented_train_is(tone_corpus, noise_dir):
    clean = datamodule(tone_corpus, None)
    noisy = datamodule(tone_corpus, WaveformAugment([Noise(str(noise_dir), [0, 5])]))
    for split in ("val", "test"):
        for a, b in zip(clean.loader(split), noisy.loader(split), strict=True):
            assert torch.equal(a["wavs"], b["wavs"])
    a, b = next(iter(clean.train_dataloader())), next(iter(noisy.train_dataloader()))
    assert torch.equal(a["index"], b["index"]) and not torch.allclose(a["wavs"], b["wavs"])
