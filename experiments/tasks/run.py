"""The four new task presets on FSDD digit strings (frozen Whisper tiny.en, unseen-speaker val nicolas /
test yweweler): one table of their numbers, every default chosen on val only.

    python -m experiments.tasks.run            # runs what results.csv lacks, then writes README.md's table
    python -m experiments.tasks.run --table    # the table only

Each run appends its rows to results.csv as it finishes (a rerun skips what is there). The exact probes
(tagging, count) are deterministic fits: one run each, whatever the seed. The trained verification head
and the frame head train by minibatch: seeds 0, 1, 2. The zero-training verification baseline scores
every layer; its best layer is chosen on val EER.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from asr_transfer.utils.atomic import replace_between, write_csv

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.csv"
OUT = ROOT / "outputs" / "experiments_tasks"
FIELDS = ["run", "seed", "metric", "value"]
SEEDS = (0, 1, 2)
# the frames preset's strings (its own sizes); its epochs are --frames-epochs, sized from a measured epoch
# to fit the CPU budget (README, Notes) and kept in results.csv ("epochs")
FRAMES_SIZE = ["data.corpus.train_per_speaker=100", "data.corpus.eval_per_speaker=50"]
# run name -> (train.py overrides, metrics kept, seeds)
RUNS = {
    "tagging_probe": (
        ["experiment=fsdd_digits_tagging"],
        ["val/map", "test/map", "test/f1_micro", "test/f1_macro"],
        (0,),
    ),
    "count_probe": (
        ["experiment=fsdd_digits_count"],
        ["val/mae", "test/mae", "test/spearman", "test/pearson"],
        (0,),
    ),
    "verification_head": (
        ["experiment=fsdd_speaker_verification"],
        ["val/eer", "test/eer", "test/min_dcf_0.01", "test/min_dcf_0.05"],
        SEEDS,
    ),
    "frames_blstm": (
        ["experiment=fsdd_digits_frames", *FRAMES_SIZE],
        [
            "epochs",
            "val/frame_f1",
            "decoding/median_frames",
            "decoding/min_duration",
            "test/frame_acc",
            *[f"test/{m}{k}" for m in ("frame_f1", "event_f1") for k in ("", "_ci95_low", "_ci95_high")],
        ],
        SEEDS,
    ),
}


def done() -> set[tuple[str, str]]:
    if not RESULTS.is_file():
        return set()
    with open(RESULTS, newline="") as f:
        return {(r["run"], r["seed"]) for r in csv.DictReader(f)}


def append(rows: list[dict]) -> None:
    """The run's rows added to results.csv in one atomic rewrite (a killed study leaves whole runs only)."""
    old = []
    if RESULTS.is_file():
        with open(RESULTS, newline="") as f:
            old = list(csv.DictReader(f))
    write_csv(RESULTS, old + rows, FIELDS)


def python(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)


def run_all(frames_epochs: int) -> None:
    """Seed 0 of every run first (and the baseline), then the other seeds: a cut-short study still has
    every row of the table."""
    have = done()
    RUNS["frames_blstm"][0].append(f"trainer.max_epochs={frames_epochs}")
    for seed in SEEDS:
        for name, (overrides, keep, seeds) in RUNS.items():
            if seed not in seeds or (name, str(seed)) in have:
                continue
            run_dir = OUT / f"{name}-seed{seed}"
            quiet = ["trainer.enable_progress_bar=false", "callbacks.progress_bar=null"]
            python("train.py", *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}", *quiet)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            append([{"run": name, "seed": seed, "metric": k, "value": metrics[k]} for k in keep])
        if seed == 0 and ("baseline_layers", "0") not in have:
            baseline()


def baseline() -> None:
    out = OUT / "baseline_layers"
    python(
        "-m", "asr_transfer.verification_layers", "--out", str(out), "experiment=fsdd_speaker_verification"
    )
    rows = []
    with open(out / "layers.csv", newline="") as f:
        for r in csv.DictReader(f):
            tag = f"layer{r['layer']}{'_centred' if r['centred'] == 'True' else ''}"
            rows += [{"run": "baseline_layers", "seed": 0, "metric": f"{tag}:{k}", "value": r[k]}
                     for k in ("val/eer", "test/eer", "test/min_dcf_0.01", "test/min_dcf_0.05")]  # fmt: skip
    append(rows)


def frames_size(epochs: list[float]) -> str:
    size = dict(o.split("=") for o in FRAMES_SIZE)
    trained = "/".join(sorted({f"{e:.0f}" for e in epochs})) or "-"
    return (f"{size['data.corpus.train_per_speaker']} training strings per speaker, "
            f"{size['data.corpus.eval_per_speaker']} per unseen speaker, {trained} epochs")  # fmt: skip


def table() -> str:
    with open(RESULTS, newline="") as f:
        rows = list(csv.DictReader(f))
    values: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        values.setdefault((r["run"], r["metric"]), []).append(float(r["value"]))

    def cell(run: str, metric: str, scale: float = 1.0) -> str:
        v = [x * scale for x in values.get((run, metric), [])]
        if not v:
            return "-"
        return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")

    def ci(run: str, metric: str) -> str:
        """The 95 % interval over test clips (bootstrap), its bounds averaged over the seeds."""
        low, high = values.get((run, f"{metric}_ci95_low")), values.get((run, f"{metric}_ci95_high"))
        return f"[{statistics.mean(low):.3f}, {statistics.mean(high):.3f}]" if low and high else ""

    def chosen(run: str) -> str:
        """The (median filter, minimum duration) each seed's best val epoch chose."""
        pairs = zip(
            values.get((run, "decoding/median_frames"), []), values.get((run, "decoding/min_duration"), [])
        )
        listed = ", ".join(f"{m:.0f} / {d:g}" for m, d in pairs)
        return f"median frames / min s per seed: {listed}" if listed else "-"

    lines = ["| task (preset) | model | val (selection) | test | seeds |", "|---|---|---|---|---|"]
    lines.append(
        f"| tagging (`fsdd_digits_tagging`) | exact probe, weighted sum | mAP {cell('tagging_probe', 'val/map')} | "
        f"mAP {cell('tagging_probe', 'test/map')}, micro-F1 {cell('tagging_probe', 'test/f1_micro')}, "
        f"macro-F1 {cell('tagging_probe', 'test/f1_macro')} | 1 (exact fit) |"
    )
    lines.append(
        f"| digit count (`fsdd_digits_count`) | ridge probe, weighted sum | MAE {cell('count_probe', 'val/mae')} | "
        f"MAE {cell('count_probe', 'test/mae')}, Spearman {cell('count_probe', 'test/spearman')} | 1 (exact fit) |"
    )
    lines.append(
        f"| frames (`fsdd_digits_frames`) | BiLSTM frame head, last layer, {frames_size(values.get(('frames_blstm', 'epochs'), []))}; decoding chosen on val "
        f"({chosen('frames_blstm')}) | frame F1 {cell('frames_blstm', 'val/frame_f1')} | frame F1 {cell('frames_blstm', 'test/frame_f1')} "
        f"{ci('frames_blstm', 'test/frame_f1')}, event F1 {cell('frames_blstm', 'test/event_f1')} "
        f"{ci('frames_blstm', 'test/event_f1')} | {len(values.get(('frames_blstm', 'test/frame_f1'), []))} |"
    )
    baseline = {m.split(":")[0] for (run, m) in values if run == "baseline_layers"}
    if baseline:
        best = min(baseline, key=lambda t: values[("baseline_layers", f"{t}:val/eer")][0])
        lines.append(
            f"| verification, zero training (`verification_layers`) | cosine of pooled frozen {best} (best on val) | "
            f"EER {cell('baseline_layers', f'{best}:val/eer')} | EER {cell('baseline_layers', f'{best}:test/eer')}, "
            f"minDCF0.01 {cell('baseline_layers', f'{best}:test/min_dcf_0.01')}, "
            f"minDCF0.05 {cell('baseline_layers', f'{best}:test/min_dcf_0.05')} | - |"
        )
    lines.append(f"| verification, trained (`fsdd_speaker_verification`) | AAM-softmax, mean-pooled embedding head | "
                 f"EER {cell('verification_head', 'val/eer')} | EER {cell('verification_head', 'test/eer')}, "
                 f"minDCF0.01 {cell('verification_head', 'test/min_dcf_0.01')}, "
                 f"minDCF0.05 {cell('verification_head', 'test/min_dcf_0.05')} | "
                 f"{len(values.get(('verification_head', 'test/eer'), []))} |")  # fmt: skip
    if baseline:
        lines += ["", "Zero-training verification, layer by layer (cosine of the layer's mean-pooled frames; "
                  "centred: minus the training split's mean vector):", "",
                  "| layer | val EER | test EER | test minDCF0.01 | test minDCF0.05 |", "|---|---|---|---|---|"]  # fmt: skip
        for t in sorted(baseline, key=lambda t: (int(t[5:].split("_")[0]), t)):
            lines.append(f"| {t} | {cell('baseline_layers', f'{t}:val/eer')} | {cell('baseline_layers', f'{t}:test/eer')} | "
                         f"{cell('baseline_layers', f'{t}:test/min_dcf_0.01')} | {cell('baseline_layers', f'{t}:test/min_dcf_0.05')} |")  # fmt: skip
    return "\n".join(lines)


def write_readme() -> None:
    replace_between(HERE / "README.md", "<!-- table:start -->", "<!-- table:end -->", table())
    print(table())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--table", action="store_true", help="only rebuild README.md's table from results.csv"
    )
    parser.add_argument(
        "--frames-epochs", type=int, default=15, help="epochs of the frames runs (preset: 15)"
    )
    args = parser.parse_args()
    if not args.table:
        run_all(args.frames_epochs)
    write_readme()
