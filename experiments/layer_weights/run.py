"""Which Whisper tiny.en layers does the weighted sum pick, per task, against the best single layer?

    python -m experiments.layer_weights.run          # runs what results.csv lacks, then plots
    python -m experiments.layer_weights.run --plot   # only rebuild results.png

Two FSDD tasks on the same audio: digit recognition (unseen test speaker) and speaker identification
(4 speakers, unseen utterances). For each: a frozen probe with ``featurizer=weighted_sum`` (its final
softmax layer weights are read from the checkpoint) and one probe per single layer
(``featurizer=layer featurizer.layer=k``). Every run is ``asr_transfer.pipeline.train.train(cfg)`` on a
config composed from conf/, in this process; results.csv is rewritten atomically after each run.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import time
from pathlib import Path

from asr_transfer.utils.atomic import atomic_path, write_csv
from experiments.fsdd import recordings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / ".cache" / "experiments" / "layer_weights"
NUM_LAYERS = 5  # Whisper tiny.en: conv/positional input + 4 transformer layers
SEEDS = [0, 1, 2]
COMMON = [
    "backbone=whisper",
    "backbone.min_window_s=0",  # each clip at its own length
    "head=linear",
    "data=manifest",
    "data.batch_size=16",
    "optimizer.lr=2e-2",
    "callbacks=none",  # fixed step budget, no validation split: the final weights are tested
    "logger=[]",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
    "+trainer.max_steps=150",
    "trainer.max_epochs=-1",
]
FEATURIZERS = {"weighted_sum": ["featurizer=weighted_sum", "featurizer.layer_norm=true"]} | {
    f"layer{k}": ["featurizer=layer", f"featurizer.layer={k}"] for k in range(NUM_LAYERS)
}
FIELDS = ["task", "featurizer", "seed", "test_acc", *[f"w{k}" for k in range(NUM_LAYERS)], "seconds"]


def manifests(task: str) -> tuple[Path, Path]:
    """digits: train 30 clips per digit from george/jackson/nicolas, test 20 per digit from yweweler.
    speaker: label = speaker; utterances 0-9 of every digit train, 40-49 test (no utterance in both)."""
    from asr_transfer.data.manifest import write_manifest

    rows = recordings()
    if task == "digits":
        train = [r for r in rows if r["speaker"] != "yweweler" and r["utt_index"] < 10]
        test = [r for r in rows if r["speaker"] == "yweweler" and r["utt_index"] < 20]
    else:
        rows = [{**r, "label": r["speaker"]} for r in rows]
        train = [r for r in rows if r["utt_index"] < 10]
        test = [r for r in rows if r["utt_index"] >= 40]
    d = WORK / "manifests"
    return Path(write_manifest(d / f"{task}-train.jsonl", train)), Path(
        write_manifest(d / f"{task}-test.jsonl", test)
    )


def run_one(task: str, featurizer: str, seed: int) -> dict:
    import torch

    from asr_transfer.config import compose
    from asr_transfer.pipeline.train import train

    train_m, test_m = manifests(task)
    run_dir = WORK / "runs" / f"{task}-{featurizer}-seed{seed}"
    keep_ckpt = featurizer == "weighted_sum"  # the layer weights are read from it
    overrides = [
        *COMMON,
        *FEATURIZERS[featurizer],
        f"seed={seed}",
        f"data.train_manifest={train_m}",
        f"data.test_manifest={test_m}",
        f"paths.output_dir={run_dir}",
        f"paths.cache_dir={WORK}",
    ]
    if keep_ckpt:  # callbacks=none + enable_checkpointing=false would leave nothing to read
        overrides = [o for o in overrides if "enable_checkpointing" not in o]
    cfg = compose(overrides)
    t0 = time.perf_counter()
    train(cfg)
    m = json.loads((run_dir / "metrics.json").read_text())
    row = {"task": task, "featurizer": featurizer, "seed": seed, "test_acc": round(m["test/acc"], 4)}
    if keep_ckpt:
        ckpt = next((run_dir / "checkpoints").glob("*.ckpt"))
        logits = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["featurizer.logits"]
        row |= {f"w{k}": round(float(w), 4) for k, w in enumerate(torch.softmax(logits, 0))}
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        layer_acc = [
            statistics.mean(float(r["test_acc"]) for r in mine if r["featurizer"] == f"layer{k}")
            for k in range(NUM_LAYERS)
        ]
        ws = [r for r in mine if r["featurizer"] == "weighted_sum"]
        weights = [statistics.mean(float(r[f"w{k}"]) for r in ws) for k in range(NUM_LAYERS)]
        ws_acc = statistics.mean(float(r["test_acc"]) for r in ws)
        xs = range(NUM_LAYERS)
        ax.bar(xs, weights, color="tab:blue", alpha=0.6, label="weighted-sum weight")
        ax.set_ylabel("layer weight")
        ax.set_xlabel("hidden layer (0 = transformer input)")
        ax.set_xticks(list(xs))
        ax2 = ax.twinx()
        ax2.plot(xs, layer_acc, "o-", color="tab:red", label="single-layer probe acc")
        ax2.axhline(ws_acc, color="tab:green", ls="--", label=f"weighted sum acc {ws_acc:.3f}")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("test accuracy")
        ax.set_title(f"{task}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax2.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
    fig.suptitle(f"Whisper tiny.en, frozen: layer weights vs. single layers ({len(SEEDS)} seeds, means)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plot", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    results = HERE / "results.csv"
    rows = list(csv.DictReader(results.open())) if results.is_file() else []
    if not args.plot:
        import torch

        torch.set_num_threads(2)
        done = {(r["task"], r["featurizer"], str(r["seed"])) for r in rows}
        for seed in SEEDS:
            for task in ("digits", "speaker"):
                for featurizer in FEATURIZERS:
                    if (task, featurizer, str(seed)) in done:
                        continue
                    rows.append(run_one(task, featurizer, seed))
                    write_csv(results, rows, FIELDS)
                    print(rows[-1], flush=True)
    plot(rows, HERE / "results.png")


if __name__ == "__main__":
    main()
