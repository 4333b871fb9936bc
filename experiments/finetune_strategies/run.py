"""Fine-tuning strategies on FSDD's unseen speaker (issue 14, item 3): probe, top-2, full fine-tuning,
LoRA, bottleneck adapters, layer-wise decay and staged unfreezing, clean and noisy tests.

Split: train george + jackson (``5`` clips per digit, the subset drawn per seed, or ``all`` 1000 clips),
validate on a fixed 10-per-digit subset of nicolas (early stopping and checkpoint choice only), test on a
fixed 20-per-digit subset of yweweler: clean, white and babble noise at 10 and 0 dB (the noisy test sets
and the training noise come from ``experiments/fsdd.py``: training noise = coloured
noise + babble of the TRAINING speakers; test babble = the validation speaker's voice).
Every trained method runs up to a step budget per label budget, validates every ``val_every`` steps
and stops early after ``patience`` checks without a better val accuracy; the best-by-val checkpoint is
tested on all five test sets. The probe is the exact L-BFGS fit (``probe=lbfgs``) on cached features;
with waveform augmentation it is the same exact fit on ``PROBE_COPIES`` stored augmented copies of the
training split (``features.augmented_copies``: the frozen backbone encodes each copy once).

    # accuracy runs (resumable: a run already in results.csv is skipped; the CSV is rewritten atomically)
    nice -n 19 python -m experiments.finetune_strategies.run --backbones tiny --budgets 5 all --aug none
    nice -n 19 python -m experiments.finetune_strategies.run --backbones tiny --budgets all --aug noise
    nice -n 19 python -m experiments.finetune_strategies.run --backbones base --budgets all --aug none
    # s/step and peak RSS: one subprocess per (backbone, method), a fixed number of steps -> cost.csv
    nice -n 19 python -m experiments.finetune_strategies.run --cost --backbones tiny base
    python -m experiments.finetune_strategies.run --table      # summary.csv + markdown table + results.png
    # the val-chosen settings of the within-1-point check (run as in README.md):
    nice -n 19 python -m experiments.finetune_strategies.run --budgets 5 --methods full_lr3e-5 lora_lr3e-4 lora_r32
    nice -n 19 python -m experiments.finetune_strategies.run --budgets all --methods lora_lr3e-4

What was run, what was cut, and on which machines: README.md.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path

from asr_transfer.utils.atomic import write_csv
from experiments.finetune_strategies.methods import BACKBONES, METHODS, SCHEDULE, TUNING, run_overrides
from experiments.finetune_strategies.splits import TESTS, materials
from experiments.fsdd import compose_cfg, test_accuracy

HERE = Path(__file__).resolve().parent


def steps_trained(run_dir: Path) -> int:
    steps = [
        int(r["step"])
        for m in run_dir.rglob("metrics.csv")
        for r in csv.DictReader(open(m))
        if r.get("step") not in (None, "")
    ]
    return max(steps, default=0) + 1 if steps else 0


def one_run(work: Path, tests: dict, backbone: str, budget: str, method: str, aug: str, seed: int) -> dict:
    from asr_transfer.pipeline.train import train

    run_dir = work / "runs" / f"{backbone}-{budget}-{method}-{aug}-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # not in the CSV: a killed run's leftovers
    t = time.perf_counter()
    train(
        compose_cfg(
            "train",
            [f"paths.output_dir={run_dir}", *run_overrides(work, backbone, budget, method, aug, seed)],
        )
    )
    seconds = time.perf_counter() - t
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ckpt = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))[0]
    row = {"backbone": backbone, "budget": budget, "method": method, "aug": aug, "seed": seed}
    row["train_clips"] = sum(1 for _ in open(work / f"train_{budget}_{seed}.jsonl"))
    row["clean"] = round(metrics["test/acc"], 4)
    for name in TESTS[1:]:
        row[name] = test_accuracy(ckpt, tests[name], work / "cache", run_dir / ("eval_" + name))
    row["val_acc"] = round(metrics.get("val/acc", float("nan")), 4)
    row["trainable"] = int(metrics["params/trainable"])
    total = metrics["params/total"]
    if method == "staged":  # logged at the start (head only); its last stage trains everything
        row["trainable"] = int(total)
    row["trainable_pct"] = round(100 * row["trainable"] / total, 3)
    row["ckpt_bytes"] = ckpt.stat().st_size
    row["best_ckpt"] = ckpt.name
    row["steps"] = steps_trained(run_dir)
    row["train_seconds"] = round(seconds, 1)
    row["load_1min"] = round(os.getloadavg()[0], 2)
    return row


def planned(a) -> list[tuple]:
    """Every run of the command line, seed-major (a cut-short study has whole seeds), this shard's share."""
    runs = [
        (backbone, budget, method, aug, seed)
        for backbone in a.backbones
        for aug in a.aug
        for seed in a.seeds
        for budget in a.budgets
        for method in a.methods
    ]
    i, n = a.shard
    return runs[i::n]


def append_row(path: Path, row: dict) -> None:
    """Adds a row under a lock (shards share the CSV), rewriting the file atomically."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = list(csv.DictReader(open(path))) if path.is_file() else []
        write_csv(path, [*rows, row], list(dict.fromkeys(k for r in [*rows, row] for k in r)))


def accuracy(a, work: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    _, tests = materials(work, a.test_per_class, a.val_per_class)
    rows = list(csv.DictReader(open(a.out))) if a.out.is_file() else []
    done = {(r["backbone"], r["budget"], r["method"], r["aug"], r["seed"]) for r in rows}
    for backbone, budget, method, aug, seed in planned(a):
        if (backbone, budget, method, aug, str(seed)) in done:
            continue
        row = one_run(work, tests, backbone, budget, method, aug, seed)
        print(row, flush=True)
        append_row(a.out, row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["tiny"], choices=list(BACKBONES))
    ap.add_argument("--budgets", nargs="+", default=["5", "all"], choices=list(SCHEDULE))
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS + TUNING)
    ap.add_argument("--aug", nargs="+", default=["none"], choices=["none", "noise"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--test-per-class", type=int, default=20, help="yweweler clips per digit in each test set"
    )
    ap.add_argument("--val-per-class", type=int, default=10, help="nicolas clips per digit for validation")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ft_study"))
    ap.add_argument("--out", type=Path, default=HERE / "results.csv")
    ap.add_argument("--cost", action="store_true", help="s/step and peak RSS pass -> cost.csv")
    ap.add_argument("--cost-one", nargs=2, metavar=("BACKBONE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per method in the cost pass")
    ap.add_argument(
        "--shard",
        type=int,
        nargs=2,
        default=[0, 1],
        metavar=("I", "N"),
        help="run every N-th run from the I-th",
    )
    ap.add_argument("--table", action="store_true", help="summary.csv, markdown table and results.png")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.cost_one:
        from experiments.finetune_strategies.cost import cost_one

        logging.disable(logging.WARNING)
        print(json.dumps(cost_one(a.work, *a.cost_one, a.steps)))
    elif a.cost:
        from experiments.finetune_strategies.cost import cost

        cost(a, a.work)
    elif a.table:
        from experiments.finetune_strategies.summary import write_summary

        print(write_summary(HERE))
    else:
        accuracy(a, a.work)


if __name__ == "__main__":
    main()
