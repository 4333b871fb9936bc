"""Transfer vs. scratch on FSDD: unseen-speaker digit accuracy against labelled clips per digit.

    python -m experiments.transfer_vs_scratch.run                 # runs what results.csv lacks, then plots
    python -m experiments.transfer_vs_scratch.run --shard 0 2     # one of two processes sharing the queue
    python -m experiments.transfer_vs_scratch.run --plot          # only rebuild summary.csv and results.png
    python -m experiments.transfer_vs_scratch.run --pilot         # one run per method at k=5 and all

Split: train pool george + jackson (100 clips per digit), val a fixed 10 clips per digit of nicolas (it
early-stops the trained methods and chooses the probe's L2), test the unseen yweweler (all 500 clips).
Each run is ``asr_transfer.pipeline.train.train(cfg)`` on a config composed by the few-shot runner
(``asr_transfer.fewshot.compose_draw``: ``data.max_per_class=k``, ``data.subset_seed=seed``; budgets are
nested per seed), in this one process. Finished runs are merged into results.csv under a file lock and
written atomically: a killed study loses one run, and a restart (or a second shard) skips what is done.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

from experiments.fsdd import SHARED, speaker_split

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / ".cache" / "experiments" / "transfer_vs_scratch"  # manifests, features, run dirs
TRAIN_SPEAKERS, VAL_SPEAKER, TEST_SPEAKER = ("george", "jackson"), "nicolas", "yweweler"
VAL_PER_DIGIT = 10  # a fixed subset of the val speaker keeps the many validations of a run cheap
ALL = 100  # george + jackson hold 100 clips per digit: k=100 is every training clip
BUDGETS = [1, 2, 5, 10, 20, ALL]
SEEDS = [0, 1, 2, 3, 4]  # seed s draws the training subset (data.subset_seed) and initialises the run
BACKBONES = {
    "tiny": ["backbone=whisper"],  # Whisper tiny.en (conf/backbone/whisper.yaml's default asset)
    "base": ["backbone=whisper", f"backbone.name_or_path={SHARED / 'models' / 'whisper-base'}"],
}
# Trained methods: AdamW steps of 8 clips, validated every VAL_EVERY steps on the val subset; the
# checkpoint with the best val loss is tested, and a run stops after PATIENCE validations without a
# better one, or at the method's step budget (its cosine schedule's length).
BATCH, VAL_EVERY, PATIENCE = 8, 10, 5
METHODS = {  # method -> (overrides, max steps); the probe has no steps: L-BFGS to convergence
    "probe": ([], 0),  # frozen, cached features, probe=lbfgs (the default)
    "top2": (["backbone.freeze=top_k", "backbone.top_k=2", "task.backbone_lr=1e-4"], 200),
    "full": (["backbone.freeze=none", "task.backbone_lr=1e-4"], 200),
    "lora": (["adapter=lora", "task.backbone_lr=1e-3"], 200),
    "scratch": (
        ["backbone=scratch", "backbone.hidden_size=128", "backbone.num_layers=2", "task.backbone_lr=1e-3"],
        400,
    ),  # fmt: skip
}
# AdamW on the head: 2e-3, chosen on the val subset by the pilot (pilot.csv: at 2e-2 every trained method's
# val loss was best at step 20-30, still in warm-up, then rose; top2 at 2e-3 reached half its val loss)
HEAD_LR = {"probe": None, "top2": 2e-3, "full": 2e-3, "lora": 2e-3, "scratch": 2e-3}
PILOT_HEAD_LR = [2e-2, 2e-3]  # compared on the val subset by --pilot
TRAINED = [
    f"data.batch_size={BATCH}",
    "optimized_metric=val/loss",  # monitored by the best checkpoint and early stopping
    "optimized_mode=min",
    f"callbacks.early_stopping.patience={PATIENCE}",
    "callbacks.last_every_n_steps=null",
    "trainer.max_epochs=-1",
    "trainer.check_val_every_n_epoch=null",
    f"+trainer.val_check_interval={VAL_EVERY}",
]
COMMON = [
    "data=manifest",
    "callbacks.progress_bar=null",
    "logger=csv",  # val rows give the step each trained run stopped at
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]
FIELDS = ["backbone", "method", "k", "n_train", "seed", "val_loss", "val_acc", "test_acc", "test_f1",
          "steps", "best_step", "epochs", "probe_l2", "head_lr", "seconds", "cpu_seconds"]  # fmt: skip


def manifests() -> dict[str, Path]:
    return speaker_split(WORK, TRAIN_SPEAKERS, VAL_SPEAKER, TEST_SPEAKER, VAL_PER_DIGIT)


def overrides(backbone: str, method: str, seed: int, paths: dict[str, Path], head_lr=None) -> list[str]:
    extra, max_steps = METHODS[method]
    ov = [*COMMON, *BACKBONES[backbone], *extra, f"seed={seed}", f"paths.cache_dir={WORK}"]
    ov += [f"data.{s}_manifest={p}" for s, p in paths.items()]
    if max_steps:
        ov += [*TRAINED, f"+trainer.max_steps={max_steps}", f"optimizer.lr={head_lr or HEAD_LR[method]}"]
    return ov


def run_one(backbone: str, method: str, k: int, seed: int, paths: dict[str, Path], head_lr=None) -> dict:
    from asr_transfer.pipeline.fewshot import compose_draw
    from asr_transfer.pipeline.train import train

    run_dir = (
        WORK / "runs" / (f"{backbone}-{method}-k{k}-seed{seed}" + (f"-lr{head_lr:g}" if head_lr else ""))
    )
    shutil.rmtree(run_dir, ignore_errors=True)  # a run killed half-way starts again
    cfg = compose_draw(overrides(backbone, method, seed, paths, head_lr), k, seed, 0, run_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = json.loads((run_dir / "metrics.json").read_text())
    steps = best = 0
    if METHODS[method][1]:  # best-{epoch}-{step}.ckpt; the CSV log's last row is where training stopped
        best = int(next((run_dir / "checkpoints").glob("best-*.ckpt")).stem.rsplit("-", 1)[-1])
        steps = max(int(r["step"]) + 1 for r in read_csv(run_dir / "csv" / "metrics.csv") if "val/loss" in r
                    and r["val/loss"])  # fmt: skip
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # full fine-tuning writes the encoder
    return {
        "backbone": backbone, "method": method, "k": k, "n_train": 10 * k, "seed": seed,
        "val_loss": round(m["val/loss"], 4), "val_acc": round(m["val/acc"], 4),
        "test_acc": round(m["test/acc"], 4), "test_f1": round(m["test/f1"], 4),
        "steps": steps, "best_step": best, "epochs": int(m.get("epochs", 0)), "probe_l2": m.get("probe/l2", ""),
        "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "head_lr": head_lr or HEAD_LR[method] or "",
    }  # fmt: skip


def key(r: dict) -> tuple:
    return (r["backbone"], r["method"], str(r["k"]), str(r["seed"]), str(r.get("head_lr", "")))


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    from asr_transfer.utils.atomic import atomic_open

    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def record(path: Path, row: dict) -> None:
    """Merge one run into results.csv: under a lock (shards share the file), rewritten atomically."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / f"{path.stem}.lock", "w") as lock:  # beside the run dirs, out of the results folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [r for r in read_csv(path) if key(r) != key(row)] + [row]
        write_csv(path, sorted(rows, key=order), FIELDS)


def order(r: dict) -> tuple:
    return (r["backbone"] != "tiny", list(METHODS).index(r["method"]), int(r["k"]), int(r["seed"]))


def queue(backbones: list[str], methods: list[str], budgets: list[int], seeds: list[int]) -> list[tuple]:
    """Seed-major: a study cut short still has every method and budget, with fewer seeds."""
    return [(b, m, k, s) for b in backbones for s in seeds for k in budgets for m in methods]


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["backbone"], r["method"], int(r["k"])), []).append(r)
    out = []
    for (b, m, k), g in sorted(groups.items(), key=lambda kv: order({"backbone": kv[0][0], "method": kv[0][1],
                                                                     "k": kv[0][2], "seed": 0})):  # fmt: skip
        acc = [float(r["test_acc"]) for r in g]
        out.append({
            "backbone": b, "method": m, "k": k, "runs": len(g),
            "acc_mean": round(statistics.fmean(acc), 4),
            "acc_std": round(statistics.stdev(acc), 4) if len(acc) > 1 else 0.0,
            "steps_mean": round(statistics.fmean(float(r["steps"]) for r in g), 1),
            "cpu_seconds_mean": round(statistics.fmean(float(r["cpu_seconds"]) for r in g), 1),
        })  # fmt: skip
    return out


def markdown(summary: list[dict]) -> str:
    """The README's tables: accuracy (mean ± std, runs) and compute (steps, CPU seconds) per budget."""
    head = (
        "| backbone | method | "
        + " | ".join(f"k={k}" if k != ALL else f"all ({ALL})" for k in BUDGETS)
        + " |"
    )
    rule = "|---|---|" + "---|" * len(BUDGETS)
    acc, cost = [head, rule], [head, rule]
    for b in BACKBONES:
        for m in METHODS:
            cells = {s["k"]: s for s in summary if s["backbone"] == b and s["method"] == m}
            if not cells:
                continue
            name = "random init" if m == "scratch" else {"tiny": "tiny.en", "base": "base"}[b]
            a, c_ = [], []
            for k in BUDGETS:
                c = cells.get(k)
                a.append(f"{c['acc_mean']:.3f} ± {c['acc_std']:.3f} ({c['runs']})" if c else "-")
                if c and METHODS[m][1]:
                    c_.append(f"{c['steps_mean']:.0f} steps, {c['cpu_seconds_mean']:.0f} s")
                else:
                    c_.append(f"L-BFGS, {c['cpu_seconds_mean']:.1f} s" if c else "-")
            acc.append(f"| {name} | {m} | " + " | ".join(a) + " |")
            cost.append(f"| {name} | {m} | " + " | ".join(c_) + " |")
    return "\n".join(acc) + "\n\nCompute per run (mean steps trained and CPU seconds):\n\n" + "\n".join(cost)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asr_transfer.utils.atomic import atomic_open

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    styles = {"tiny": "-", "base": "--"}
    colours = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for b in BACKBONES:
        for m in METHODS:
            pts = [s for s in summary if s["backbone"] == b and s["method"] == m]
            if not pts:
                continue
            xs = [BUDGETS.index(s["k"]) for s in pts]
            mean = [s["acc_mean"] for s in pts]
            std = [s["acc_std"] for s in pts]
            name = "Whisper tiny.en" if b == "tiny" else "Whisper base"
            label = f"{m} ({'random init' if m == 'scratch' else name})"
            ax.plot(xs, mean, styles[b], marker="o", color=colours[m], label=label)
            ax.fill_between(xs, [a - s for a, s in zip(mean, std, strict=True)],
                            [a + s for a, s in zip(mean, std, strict=True)], color=colours[m], alpha=0.15)  # fmt: skip
    ax.set_xticks(range(len(BUDGETS)), [str(k) if k != ALL else f"all ({ALL})" for k in BUDGETS])
    ax.set_xlabel("labelled training clips per digit (george + jackson)")
    ax.set_ylabel(f"test accuracy (unseen speaker {TEST_SPEAKER}, 500 clips)")
    ax.set_ylim(0, 1)
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("FSDD: transfer vs. scratch (mean ± std over seeds; early stopping on nicolas)")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", action="store_true", help="only rebuild summary.csv and results.png")
    ap.add_argument("--pilot", action="store_true", help="one run per method at k=5 and all -> pilot.csv")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--budgets", nargs="+", type=int, default=BUDGETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--shard", nargs=2, type=int, default=[0, 1], metavar=("I", "N"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a shared 2-core machine: 1)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = HERE / ("pilot.csv" if args.pilot else "results.csv")
    if not args.plot:
        import torch

        torch.set_num_threads(args.threads)
        paths = manifests()
        budgets = [5, ALL] if args.pilot else args.budgets
        seeds = [0] if args.pilot else args.seeds
        todo = queue(args.backbones, args.methods, budgets, seeds)
        if args.pilot:  # every trained method at each head lr
            todo = [(*t, lr) for t in todo for lr in (PILOT_HEAD_LR if METHODS[t[1]][1] else [None])]
        else:
            todo = [(*t, None) for t in todo]
        for b, m, k, s, lr in todo[args.shard[0] :: args.shard[1]]:
            if (b, m, str(k), str(s), str(lr or HEAD_LR[m] or "")) in {key(r) for r in read_csv(results)}:
                continue
            row = run_one(b, m, k, s, paths, lr)
            record(results, row)
            print(", ".join(f"{f}={row[f]}" for f in FIELDS), flush=True)
    if args.pilot:
        return
    summary = summarize(read_csv(results))
    write_csv(HERE / "summary.csv", summary, list(summary[0]))
    plot(summary, HERE / "results.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
