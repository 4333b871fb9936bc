"""Transfer vs. scratch on FSDD: unseen-speaker digit accuracy against labelled clips per digit.

    python experiments/transfer_vs_scratch/run.py          # runs what results.csv lacks, then plots
    python experiments/transfer_vs_scratch/run.py --plot   # only rebuild summary.csv and results.png

Every run goes through ``asr_transfer.pipeline.train.train(cfg)`` with a config composed from conf/
(the same path as ``python train.py ...``), in this one process so imports happen once. Each
finished run is appended to results.csv at once (atomic rewrite): a killed study loses one run,
and a restart skips what is done.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
WORK = ROOT / ".cache" / "experiments" / "transfer_vs_scratch"  # manifests, features, run dirs
TEST_SPEAKER, TEST_PER_DIGIT = "yweweler", 10  # unseen speaker; 10 clips per digit keep testing cheap
BUDGETS = [1, 2, 5, 10, 20, None]  # labelled training clips per digit; None: all (150)
SEEDS = [0, 1, 2]
STEPS, BATCH = 20, 8  # every run: 20 AdamW steps of 8 clips (compute-matched; see README)

# Whisper tiny.en encodes each clip at its own length (FSDD clips are ~0.4 s; the 1 s default window costs 2.5x).
WHISPER = ["backbone=whisper", "backbone.min_window_s=0"]
METHODS = {  # method -> overrides on top of conf/train.yaml
    "probe": [*WHISPER, "backbone.freeze=all"],  # frozen, cached features
    "top2": [*WHISPER, "backbone.freeze=top_k", "backbone.top_k=2", "task.backbone_lr=1e-4"],
    "full": [*WHISPER, "backbone.freeze=none", "task.backbone_lr=1e-4"],
    "scratch": [  # same featurizer + head on a small log-mel transformer from random weights
        "backbone=scratch",
        "backbone.hidden_size=128",
        "backbone.num_layers=2",
        "task.backbone_lr=1e-3",
    ],
}
COMMON = [
    "featurizer=weighted_sum",
    "head=linear",
    "data=manifest",
    f"data.batch_size={BATCH}",
    "featurizer.layer_norm=true",  # lr and layer norm picked on a pilot with speaker nicolas held out
    "optimizer.lr=2e-2",
    "callbacks=none",  # no checkpoints, no early stopping: fixed step budget, the final weights are tested
    # (a harmless callback: train.callbacks_for cannot take an empty callbacks node yet; reported)
    "+callbacks.timer={_target_:lightning.pytorch.callbacks.Timer}",
    "logger=[]",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
    f"+trainer.max_steps={STEPS}",
    "trainer.max_epochs=-1",
]
FIELDS = ["method", "per_class", "n_train", "seed", "test_acc", "test_f1", "seconds", "cpu_seconds"]


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    from asr_transfer.utils.atomic import atomic_open

    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def manifests(per_class: int | None, seed: int) -> tuple[Path, Path, int]:
    """Train: speakers other than the test speaker, ``per_class`` random clips per digit. Test: 10 per digit."""
    from asr_transfer.data.corpora.fsdd import scan
    from asr_transfer.data.datamodule import limit_per_class
    from asr_transfer.data.manifest import write_manifest

    rows = scan(FSDD)
    pool = [r for r in rows if r["speaker"] != TEST_SPEAKER]
    train = limit_per_class(pool, "label", per_class, seed) if per_class else pool
    test = [r for r in rows if r["speaker"] == TEST_SPEAKER and r["utt_index"] < TEST_PER_DIGIT]
    d = WORK / "manifests"
    tr = write_manifest(d / f"train-{per_class or 'all'}-seed{seed}.jsonl", train)
    te = write_manifest(d / "test.jsonl", test)
    return Path(tr), Path(te), len(train)


def run_one(method: str, per_class: int | None, seed: int) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import asr_transfer.config  # noqa: F401  (resolvers)
    from asr_transfer.pipeline.train import train

    train_m, test_m, n_train = manifests(per_class, seed)
    run_dir = WORK / "runs" / f"{method}-{per_class or 'all'}-seed{seed}"
    overrides = [
        *COMMON,
        *METHODS[method],
        f"seed={seed}",
        f"data.train_manifest={train_m}",
        f"data.test_manifest={test_m}",
        f"paths.output_dir={run_dir}",
        f"paths.cache_dir={WORK}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    import json

    m = json.loads((run_dir / "metrics.json").read_text())
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "method": method,
        "per_class": per_class or "all",
        "n_train": n_train,
        "seed": seed,
        "test_acc": round(m["test/acc"], 4),
        "test_f1": round(m["test/f1"], 4),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
    }


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for method in METHODS:
        for b in BUDGETS:
            accs = [
                float(r["test_acc"])
                for r in rows
                if r["method"] == method and str(r["per_class"]) == str(b or "all")
            ]
            if accs:
                out.append(
                    {
                        "method": method,
                        "per_class": b or "all",
                        "runs": len(accs),
                        "acc_mean": round(statistics.mean(accs), 4),
                        "acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
                    }
                )
    return out


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(b or "all (150)") for b in BUDGETS]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in METHODS:
        pts = [s for s in summary if s["method"] == method]
        xs = [labels.index(str(s["per_class"]) if s["per_class"] != "all" else "all (150)") for s in pts]
        ax.errorbar(
            xs,
            [s["acc_mean"] for s in pts],
            yerr=[s["acc_std"] for s in pts],
            marker="o",
            capsize=3,
            label=method,
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("labelled training clips per digit")
    ax.set_ylabel(f"test accuracy (unseen speaker {TEST_SPEAKER})")
    ax.set_ylim(0, 1)
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"FSDD: transfer vs. scratch ({len(SEEDS)} seeds, mean ± std, {STEPS} steps each)")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", action="store_true", help="only rebuild summary.csv and results.png")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    results = HERE / "results.csv"
    rows = read_csv(results)
    if not args.plot:
        import torch

        torch.set_num_threads(2)
        done = {(r["method"], r["per_class"], r["seed"]) for r in rows}
        for seed in SEEDS:
            for b in BUDGETS:
                for method in args.methods:
                    if (method, str(b or "all"), str(seed)) in done:
                        continue
                    row = run_one(method, b, seed)
                    rows.append(row)
                    write_csv(results, rows, FIELDS)
                    print(
                        f"{method:8s} per_class={row['per_class']!s:4s} seed={seed} "
                        f"acc={row['test_acc']:.3f} ({row['seconds']:.0f} s wall, {row['cpu_seconds']:.0f} s cpu)",
                        flush=True,
                    )
    summary = summarize(rows)
    write_csv(HERE / "summary.csv", summary, ["method", "per_class", "runs", "acc_mean", "acc_std"])
    plot(summary, HERE / "results.png")
    for s in summary:
        print(
            f"{s['method']:8s} {s['per_class']!s:4s} {s['acc_mean']:.3f} ± {s['acc_std']:.3f} (n={s['runs']})"
        )


if __name__ == "__main__":
    main()
