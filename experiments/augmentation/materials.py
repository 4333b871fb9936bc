"""Noise material and noisy test sets for the augmentation study (FSDD, 8 kHz).

Training noise (``train_noise/``): white, pink and brown noise (seed 0) and babble of 4 talkers
mixed from the TRAINING speakers' clips only. Test noise: white noise of another seed (1000) and
babble mixed from the VALIDATION speaker's clips (a voice never in training; validation itself
stays clean), so no test noise sample was ever seen in training. Noisy test sets mix every clip
of the test speaker with a stretch of test noise at a fixed SNR (``mix_at_snr``, exact).
"""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
import torch

from asr_transfer.data.augment import mix_at_snr, noise_segment
from asr_transfer.data.noise import babble, coloured_noise, write, write_coloured
from asr_transfer.utils.rng import clip_generator

SR = 8000  # FSDD's rate: noise is mixed at the corpus's own rate


def clips_of(recordings: Path, speakers: list[str]) -> list[Path]:
    return sorted(f for f in recordings.glob("*.wav") if f.stem.split("_")[1] in speakers)


def load(path: Path) -> torch.Tensor:
    x, sr = sf.read(str(path), dtype="float32")
    assert sr == SR, f"{path}: expected {SR} Hz"
    return torch.from_numpy(x)


def make_babble(clips: list[Path], out: Path, files: int, seconds: float, seed: int) -> list[Path]:
    audio = [load(c) for c in clips]
    gen = torch.Generator().manual_seed(seed)
    return [
        write(out / f"babble_{k}.wav", babble(audio, int(seconds * SR), 4, gen), SR) for k in range(files)
    ]


def prepare(recordings: Path, work: Path, train: list[str], val: str, test: str, snrs: list[int]) -> dict:
    """Writes the noise folders and test manifests under ``work``; returns {test set name: manifest}."""
    write_coloured(work / "train_noise", seconds=20.0, sample_rate=SR, seed=0)
    make_babble(clips_of(recordings, train), work / "train_noise", files=4, seconds=20.0, seed=0)
    test_noise = {
        "white": coloured_noise(60 * SR, "white", torch.Generator().manual_seed(1000)),
        "babble": load(make_babble(clips_of(recordings, [val]), work / "test_noise", 1, 60.0, 1000)[0]),
    }
    manifests = {}
    test_clips = clips_of(recordings, [test])
    for kind, noise in test_noise.items():
        for snr in snrs:
            name, rows = f"{kind}_{snr}dB", []
            for i, clip in enumerate(test_clips):
                x = load(clip)
                start = float(torch.rand((), generator=clip_generator(snr, 0, i, kind)))
                y = mix_at_snr(x, noise_segment(noise, x.shape[0], start), float(snr))
                out = write(work / "tests" / name / clip.name, y / max(1.0, float(y.abs().max())), SR)
                rows.append({"audio_filepath": str(out), "duration": x.shape[0] / SR, "label": clip.stem[0]})
            m = work / "tests" / f"{name}.jsonl"
            m.write_text("".join(json.dumps(r) + "\n" for r in rows))
            manifests[name] = m
    return manifests


def compose_cfg(name: str, overrides: list[str]):
    """``conf/<name>.yaml`` composed with ``overrides`` (train, eval), as the CLIs do."""
    from asr_transfer.config import compose

    return compose(overrides, name)


def test_accuracy(ckpt: Path, manifest: Path, cache_dir: Path, out_dir: Path) -> float:
    """``eval.py`` of ``ckpt`` on one test manifest (e.g. a noisy copy of the test speaker): its test/acc."""
    from asr_transfer.pipeline.evaluate import evaluate

    overrides = [
        f"ckpt_path={ckpt}",
        "data=manifest",
        "data.train_manifest=null",
        f"data.test_manifest={manifest}",
        f"paths.cache_dir={cache_dir}",
        f"paths.output_dir={out_dir}",
        "+trainer.enable_progress_bar=false",
    ]
    return round(evaluate(compose_cfg("eval", overrides))["test/acc"], 4)
