"""s/step and peak RSS per (backbone, method): one subprocess each (``run.py --cost``), so each process's
``ru_maxrss`` is that method's own peak, not the largest of a long-lived process's runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from asr_transfer.config import PROJECT_ROOT
from asr_transfer.utils.atomic import write_csv
from experiments.finetune_strategies.methods import run_overrides
from experiments.finetune_strategies.splits import materials
from experiments.fsdd import compose_cfg

HERE = Path(__file__).resolve().parent


def cost_one(work: Path, backbone: str, method: str, steps: int) -> dict:
    """s/step and peak RSS of ``steps`` training steps (batch 8, audio in, backbone every step) in this process.

    Staged unfreezing is measured at its last stage (everything trains), the probe as the frozen backbone's
    forward plus the head's step (with the cache the probe costs no backbone time per step at all).
    """
    import resource

    import torch

    from asr_transfer.pipeline.build import build_run
    from asr_transfer.pipeline.plan import make_plan

    over = run_overrides(work, backbone, "all", method, "none", 0)
    # audio through the backbone every step (features.mode=off): what a step costs
    over = [o for o in over if not o.startswith(("probe=", "backbone.unfreeze"))] + [
        "probe=none",
        "features.mode=off",
    ]
    if method == "staged":
        over.append("backbone.freeze=none")
    cfg = compose_cfg("train", [f"paths.output_dir={work / 'cost_run'}", *over])
    parts, task = build_run(cfg, make_plan(cfg, overrides=[]))
    dm = parts.datamodule
    task.train()
    opt = torch.optim.AdamW(task.param_groups(), lr=1e-4)
    it = iter(dm.train_dataloader())
    total = 0.0
    for k in range(steps + 2):  # two warm-up steps
        batch = next(it)
        t = time.perf_counter()
        opt.zero_grad()
        loss = task.training_step(batch, k)
        loss.backward()
        opt.step()
        if k >= 2:
            total += time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "backbone": backbone,
        "method": method,
        "steps": steps,
        "s_per_step": round(total / steps, 4),
        "peak_rss_bytes": rss,
    }


def cost(a, work: Path) -> None:
    materials(work, a.test_per_class, a.val_per_class)
    out = HERE / "cost.csv"
    rows = list(csv.DictReader(open(out))) if out.is_file() else []
    done = {(r["backbone"], r["method"]) for r in rows}
    for backbone in a.backbones:
        for method in a.methods:
            if (backbone, method) in done:
                continue
            cmd = [
                sys.executable,
                "-m",
                "experiments.finetune_strategies.run",
                "--cost-one",
                backbone,
                method,
                "--steps",
                str(a.steps),
                "--work",
                str(work),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["load_1min"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(row, flush=True)
            write_csv(out, rows, list(dict.fromkeys(k for r in rows for k in r)))
