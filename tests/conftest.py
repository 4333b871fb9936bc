"""Shared fixtures: generated audio corpora, tiny random backbones, Hydra composition."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_transfer.config import compose
from tests.presets import TINY_WHISPER, TINY_WHISPER_CONFIG  # noqa: F401  (re-exported: tests import them from here)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = (ROOT / ".." / "shared").resolve()
WHISPER_DIR = SHARED / "models" / "whisper-tiny.en"
FSDD_DIR = SHARED / "data" / "fsdd"


def run_python(*args, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh interpreter at the repository root, output captured. The package is
    importable (PYTHONPATH), Hydra prints whole tracebacks; ``env`` adds or replaces variables."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1", **env}
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


needs_shared = pytest.mark.skipif(
    not (WHISPER_DIR.is_dir() and FSDD_DIR.is_dir()), reason="../shared assets (Whisper tiny.en, FSDD) absent"
)


def tone(seconds: float, sr: int, freq: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A sine with a little noise: class identity lives in the frequency, so tiny models can learn it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * math.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
    x = x.astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_wav(path: Path, data: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def stable_seed(*parts) -> int:
    """A seed from the parts' text: the same in every process (``hash()`` changes with PYTHONHASHSEED)."""
    return zlib.crc32(repr(parts).encode()) % 10_000


TONE_FREQS = {"low": 300.0, "mid": 800.0, "high": 1800.0}
TONE_SPLITS = {"train": ["s0", "s1"], "val": ["s2"], "test": ["s3"]}


def write_tone_corpus(root: Path, per_class: int = 4) -> dict[str, Path]:
    """Three classes (tones at 300/800/1800 Hz), speakers s0,s1 train / s2 val / s3 test, ``per_class``
    clips per speaker and class at 8 or 16 kHz. Returns {"train": manifest, "val": ..., "test": ...}:
    JSONL with relative audio paths, ``label`` and ``text`` (the class word, for recognition tasks), and
    the targets of the other tasks: ``labels`` (tags: the class, plus "wide" for 16 kHz clips),
    ``target`` (the tone's frequency in kHz) and ``segments`` (the tone from 50 ms in to 50 ms before
    the end, the class as its label)."""
    out = {}
    for split, speakers in TONE_SPLITS.items():
        rows = []
        for spk in speakers:
            for label, f in TONE_FREQS.items():
                for k in range(per_class):
                    dur = 0.3 + 0.1 * (k % 3)
                    sr = 8000 if k % 2 else 16000
                    rel = Path("audio") / f"{label}_{spk}_{k}.wav"
                    write_wav(root / rel, tone(dur, sr, f * (1 + 0.02 * k), stable_seed(spk, label, k)), sr)
                    row = {"audio_filepath": str(rel), "duration": dur, "label": label, "text": label}
                    tags = [label, "wide"] if sr == 16000 else [label]
                    segment = {"start": 0.05, "end": round(dur - 0.05, 3), "label": label}
                    extra = {
                        "labels": tags,
                        "target": round(f * (1 + 0.02 * k) / 1000, 4),
                        "segments": [segment],
                    }
                    rows.append({**row, "speaker": spk, **extra})
        m = root / f"{split}.jsonl"
        m.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[split] = m
    return out


def folder_corpus(root: Path) -> Path:
    """``root/{train,val,test}/<label>/*.wav`` (``data=folder``): tones at 300/800/1800 Hz, 6/3/3 per class."""
    freqs = {"low": 300.0, "mid": 800.0, "high": 1800.0}
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for label, f in freqs.items():
            for k in range(n):
                seed = 1000 * k + 10 * len(split) + int(f)  # deterministic (hash() of str is salted)
                write_wav(root / split / label / f"{k}.wav", tone(0.3 + 0.1 * (k % 3), 16000, f, seed), 16000)
    return root


@pytest.fixture
def tone_corpus(tmp_path: Path) -> dict[str, Path]:
    """``write_tone_corpus`` in tmp_path: 4 clips per speaker and class (24 training clips)."""
    return write_tone_corpus(tmp_path)


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train"):
    """Compose conf/<config_name>.yaml like the CLI does, with the run directory set to ``output_dir``."""
    if config_name in ("eval", "predict"):  # what eval.py / predict.py do before Hydra composes
        from asr_transfer.pipeline.data_overrides import checkpoint_data

        checkpoint_data(overrides)
    return compose([f"paths.output_dir={output_dir}", *overrides], config_name)


def predict_rows(ckpt: Path, inputs, output: Path, *extra: str) -> list[dict]:
    """What ``predict.py ckpt_path=<ckpt> inputs=<inputs> output=<output>.json`` writes (composed like the CLI)."""
    from asr_transfer.pipeline.predict import run

    config = [f"ckpt_path={ckpt}", f"inputs={inputs}", f"output={output}", *extra]
    run(compose_train(config, output.parent / "pred", config_name="predict"))
    return json.loads(output.read_text())


def tone_overrides(corpus: dict[str, Path], cache_dir: Path) -> list[str]:
    return [
        "data=manifest",
        f"data.train_manifest={corpus['train']}",
        f"data.val_manifest={corpus['val']}",
        f"data.test_manifest={corpus['test']}",
        f"paths.cache_dir={cache_dir}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
    ]


def featurizer_for(cfg, backbone):
    """The config's featurizer at ``backbone``'s geometry (what ``build_parts`` builds for a run)."""
    from hydra.utils import instantiate

    return instantiate(cfg.featurizer, _convert_="all")(
        num_layers=backbone.num_layers, hidden_size=backbone.hidden_size
    )


def task_for(cfg, backbone, **task_kwargs):
    """The config's task around ``backbone`` (with its featurizer and SpecAugment), as a run builds it."""
    from asr_transfer.pipeline.build import build_task
    from asr_transfer.pipeline.plan import make_plan

    spec = make_plan(cfg, overrides=[]).spec_augment
    return build_task(cfg, backbone, featurizer_for(cfg, backbone), spec, **task_kwargs)


def audio_datamodule(cfg, backbone, purpose: str = "fit", **overrides):
    """The run's datamodule serving audio only (no features store) at ``backbone``'s rate; ``purpose="test"``
    has no waveform augmentation, as in eval."""
    from asr_transfer.pipeline.build import build_datamodule
    from asr_transfer.pipeline.plan import make_plan

    plan = make_plan(cfg, purpose, overrides=[])
    return build_datamodule(cfg, plan, backbone.sample_rate, backbone.min_samples, **overrides)
