"""The GPU paths (marker ``gpu``; in ``make test``, skipped without CUDA): trainer=gpu with bf16
fine-tuning, the cache pass on the GPU, and trainer=ddp over NCCL (skipped with fewer than 2 GPUs).
"""

from __future__ import annotations

import json
import math
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


def _record(monkeypatch, cls, what):
    """Record ``what(self, args, out)`` at every forward of ``cls`` (a spy, numbers unchanged)."""
    seen, forward = [], cls.forward

    def spy(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        seen.append(what(self, args, out))
        return out

    monkeypatch.setattr(cls, "forward", spy)
    return seen


def test_gpu_bf16_fine_tunes_the_backbone_with_finite_loss(tmp_path, tone_corpus, monkeypatch):
    """trainer=gpu: the backbone runs on CUDA under bf16 autocast, its weights move, the loss stays finite."""
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone
    from asr_transfer.pipeline.build import build_backbone

    seen = _record(
        monkeypatch,
        WhisperEncoderBackbone,
        lambda self, args, out: (args[0].device.type, torch.is_autocast_enabled("cuda")),
    )
    out = tmp_path / "run"
    cfg = compose_train(
        [*_common(tone_corpus, tmp_path / "c"), "trainer=gpu", "backbone.freeze=none", "features.mode=off"],
        out,
    )
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    train(cfg)
    assert seen and set(seen) == {("cuda", True)}, set(seen)
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    trained = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    initial = build_backbone(cfg).state_dict()  # the same seeded random init
    changed = [k for k, v in initial.items() if not torch.equal(trained[f"backbone.{k}"].cpu(), v)]
    assert len(changed) > len(initial) // 2, f"{len(changed)} of {len(initial)} backbone tensors changed"


def test_gpu_frozen_probe_builds_its_cache_on_the_gpu_and_matches_cpu(tmp_path, tone_corpus, monkeypatch):
    """Same probe, same seed: the cache pass of the GPU run feeds the backbone CUDA tensors (it is the
    backbone's only forward in a cached run), and the run reaches the CPU run's accuracy."""
    from asr_transfer.backbones.whisper import WhisperEncoderBackbone

    cpu_out, gpu_out = tmp_path / "cpu", tmp_path / "gpu"
    train(compose_train([*_common(tone_corpus, tmp_path / "c1", "cpu"), "trainer=cpu"], cpu_out))
    seen = _record(monkeypatch, WhisperEncoderBackbone, lambda self, args, out: args[0].device.type)
    train(
        compose_train(
            [*_common(tone_corpus, tmp_path / "c2"), "trainer=gpu", "trainer.precision=32"], gpu_out
        )
    )
    assert seen and set(seen) == {"cuda"}, set(seen)
    cpu, gpu = (json.loads((d / "metrics.json").read_text()) for d in (cpu_out, gpu_out))
    assert gpu["test/acc"] == pytest.approx(cpu["test/acc"], abs=0.05)
    assert gpu["test/loss"] == pytest.approx(cpu["test/loss"], rel=0.05)


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="trainer=ddp over NCCL needs >= 2 GPUs (one card: no all-reduce)"
)
def test_ddp_strategy_on_the_gpus_matches_one_gpu(tmp_path, tone_corpus):
    """trainer=ddp (NCCL) launched as users do over every visible GPU: every rank joins, and the run
    reaches the single-GPU run's test accuracy on the same data and seed."""
    n = torch.cuda.device_count()
    single = tmp_path / "single"
    train(compose_train([*_common(tone_corpus, tmp_path / "c1"), "trainer=gpu", "trainer.devices=1"], single))
    out = tmp_path / "ddp"
    args = [*_common(tone_corpus, tmp_path / "c"), "trainer=ddp", f"hydra.run.dir={out}"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert f"MEMBER: {n}/{n}" in proc.stdout + proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    reference = json.loads((single / "metrics.json").read_text())
    # n ranks see n times the batch per step (fewer steps), so numbers match loosely, not exactly
    assert metrics["test/acc"] == pytest.approx(reference["test/acc"], abs=0.1), (metrics, reference)
