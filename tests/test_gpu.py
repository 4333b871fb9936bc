"""The GPU paths (``-m gpu``; skipped without CUDA): trainer=gpu with bf16, trainer=ddp, the cache pass.

These are what a CPU-only CI cannot run; on a CUDA machine run ``pytest -m gpu``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from asr_transfer.pipeline.train import train
from tests.conftest import ROOT, TINY_WHISPER, compose_train, tone_overrides

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _common(corpus, cache_dir, accelerator: str = "gpu") -> list[str]:
    # tone_overrides pins trainer.accelerator=cpu for the CPU suite; a value override beats trainer=gpu
    cpu_only = [o for o in tone_overrides(corpus, cache_dir) if o != "trainer.accelerator=cpu"]
    return [
        *cpu_only,
        *TINY_WHISPER,
        "trainer.max_epochs=3",
        "optimizer.lr=0.02",
        f"trainer.accelerator={accelerator}",
    ]


def test_gpu_bf16_fine_tunes_the_backbone_with_finite_loss(tmp_path, tone_corpus):
    out = tmp_path / "run"
    cfg = compose_train(
        [*_common(tone_corpus, tmp_path / "c"), "trainer=gpu", "backbone.freeze=none", "features.mode=off"],
        out,
    )
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    torch.cuda.reset_peak_memory_stats()
    train(cfg)
    assert torch.cuda.max_memory_allocated() > 0  # it really ran on the GPU
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(v == v for v in metrics.values()) and metrics["train/loss"] < 10  # no NaN, no blow-up
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_gpu_frozen_probe_builds_its_cache_on_the_gpu_and_matches_cpu(tmp_path, tone_corpus):
    """Same probe, same seed: the GPU run (cache computed on the GPU) reaches the CPU run's accuracy."""
    cpu_out, gpu_out = tmp_path / "cpu", tmp_path / "gpu"
    train(compose_train([*_common(tone_corpus, tmp_path / "c1", "cpu"), "trainer=cpu"], cpu_out))
    torch.cuda.reset_peak_memory_stats()
    train(
        compose_train(
            [*_common(tone_corpus, tmp_path / "c2"), "trainer=gpu", "trainer.precision=32"], gpu_out
        )
    )
    assert torch.cuda.max_memory_allocated() > 0
    cpu, gpu = (json.loads((d / "metrics.json").read_text()) for d in (cpu_out, gpu_out))
    assert gpu["test/acc"] == pytest.approx(cpu["test/acc"], abs=0.05)
    assert gpu["test/loss"] == pytest.approx(cpu["test/loss"], rel=0.05)


def test_ddp_strategy_on_the_gpu(tmp_path, tone_corpus):
    """trainer=ddp (NCCL, bf16) launched as users do, over every visible GPU."""
    out = tmp_path / "ddp"
    args = [*_common(tone_corpus, tmp_path / "c"), "trainer=ddp", f"hydra.run.dir={out}"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    n = torch.cuda.device_count()
    assert f"MEMBER: {n}/{n}" in proc.stdout + proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
