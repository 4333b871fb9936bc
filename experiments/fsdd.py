"""FSDD as every study here reads it: the recordings listed by the corpus module itself (its file naming
and folder layout stay in ``asr_transfer/data/corpora/fsdd.py``), from ../shared when present; the noise
material and noisy test sets (``prepare``) and the composition / eval helpers the studies share.

Noise (``prepare``): training noise (``train_noise/``) is white, pink and brown noise (seed 0) and babble
of 4 talkers mixed from the TRAINING speakers' clips only. Test noise: white noise of another seed (1000)
and babble mixed from the VALIDATION speaker's clips (a voice never in training; validation itself stays
clean), so no test noise sample was ever seen in training. Noisy test sets mix every clip of the test
speaker with a stretch of test noise at a fixed SNR (``mix_at_snr``, exact). A noisy validation set
(``noisy_val``) mixes the validation clips with fresh draws of the training-type noise only.

Studies import this as ``experiments.fsdd``: run them from the repository root as modules
(``python -m experiments.<study>.run``), so no study edits ``sys.path`` or imports another's script.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import soundfile as sf
import torch

from asr_transfer.config import PROJECT_ROOT
from asr_transfer.data.augment import mix_at_snr, noise_segment
from asr_transfer.data.corpora.fsdd import find_recordings, scan
from asr_transfer.data.noise import babble, coloured_noise, write, write_coloured
from asr_transfer.utils.rng import clip_generator

SHARED = PROJECT_ROOT.parent / "shared"
MODELS = SHARED / "models"


@cache
def recordings() -> list[dict]:
    """Every FSDD recording as the corpus lists it: ``audio_filepath``, ``label`` (the digit), ``speaker``,
    ``utt_index``, ``duration``."""
    folder = find_recordings(str(SHARED / "data" / "fsdd"), str(PROJECT_ROOT / ".cache" / "data" / "fsdd"))
    return scan(folder)


def speaker_split(
    work: Path, train: tuple[str, ...], val: str, test: str, val_per_digit: int
) -> dict[str, Path]:
    """Manifests of a by-speaker split: every clip of the training speakers, ``val_per_digit`` fixed
    utterances of each digit of the val speaker (the same for every digit, seeded), every test clip."""
    import random

    from asr_transfer.data.manifest import write_manifest

    rows = recordings()
    keep = set(random.Random(0).sample(range(50), val_per_digit))
    splits = {
        "train": [r for r in rows if r["speaker"] in train],
        "val": [r for r in rows if r["speaker"] == val and r["utt_index"] in keep],
        "test": [r for r in rows if r["speaker"] == test],
    }
    return {s: Path(write_manifest(work / "manifests" / f"{s}.jsonl", r)) for s, r in splits.items()}


def clips_of(speakers: list[str]) -> list[Path]:
    """The recordings of these speakers, sorted by path."""
    return sorted(Path(r["audio_filepath"]) for r in recordings() if r["speaker"] in speakers)


SR = 8000  # FSDD's rate: noise is mixed at the corpus's own rate


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


def prepare(work: Path, train: list[str], val: str, test: str, snrs: list[int]) -> dict:
    """Writes the noise folders and test manifests under ``work``; returns {test set name: manifest}."""
    write_coloured(work / "train_noise", seconds=20.0, sample_rate=SR, seed=0)
    make_babble(clips_of(train), work / "train_noise", files=4, seconds=20.0, seed=0)
    test_noise = {
        "white": coloured_noise(60 * SR, "white", torch.Generator().manual_seed(1000)),
        "babble": load(make_babble(clips_of([val]), work / "test_noise", 1, 60.0, 1000)[0]),
    }
    manifests = {}
    test_clips = clips_of([test])
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


def noisy_val(work: Path, clips: list[Path], train: list[str], snrs: list[int], seed: int = 1) -> dict:
    """Noisy copies of the validation clips for choosing augmentation settings: training-type noise only
    (white/pink/brown and 4-talker babble of the TRAINING speakers, as ``prepare`` writes for training, but
    fresh draws of seed ``seed``), never the test noise or the test speaker. Each clip gets a seeded noise
    file and start; returns {``val_<snr>dB``: manifest}."""
    files = write_coloured(work / "val_noise", seconds=20.0, sample_rate=SR, seed=seed)
    files += make_babble(clips_of(train), work / "val_noise", files=2, seconds=20.0, seed=seed)
    noises = [load(f) for f in files]
    manifests = {}
    for snr in snrs:
        name, rows = f"val_{snr}dB", []
        for i, clip in enumerate(clips):
            gen = clip_generator(seed, snr, i, "val_noise")
            noise = noises[int(torch.randint(len(noises), (), generator=gen))]
            x = load(clip)
            y = mix_at_snr(
                x, noise_segment(noise, x.shape[0], float(torch.rand((), generator=gen))), float(snr)
            )
            out = write(work / "val" / name / clip.name, y / max(1.0, float(y.abs().max())), SR)
            rows.append({"audio_filepath": str(out), "duration": x.shape[0] / SR, "label": clip.stem[0]})
        manifests[name] = work / "val" / f"{name}.jsonl"
        manifests[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
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
