"""The no-transfer baseline trained to convergence, with its own learning rate chosen on val.

    nice -n 10 python -m experiments.scratch_baseline.run      # resumable: finished runs in results.csv stay
    python -m experiments.scratch_baseline.run --table         # README.md from results.csv only

Same split as ``experiments/transfer_vs_scratch`` at k=all (train george + jackson, 1000 clips; val the fixed
100-clip subset of nicolas; test yweweler, 500 clips) and the same randomly initialised encoder
(``backbone=scratch``, d=128, 2 layers), but a budget long enough to converge: up to ``MAX_STEPS`` AdamW steps
of 8 clips (16 epochs), validated every ``VAL_EVERY`` steps, stopped after ``PATIENCE`` validations without a
lower val loss. The rate (head and encoder alike) is chosen by ``asr_transfer.selection.choose_on_val`` on
the best val loss (the monitored metric; ``val/acc`` in metrics.json is the last validation's) over the selection seed(s); the chosen rate then runs more seeds. Test is reported, never read.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from asr_transfer.selection import choose_on_val
from asr_transfer.stats import seed_summary
from asr_transfer.utils.atomic import write_csv, write_text
from experiments.fsdd import PROJECT_ROOT, speaker_split

HERE = Path(__file__).resolve().parent
# transfer_vs_scratch's split (its speakers and val subset), so the two studies' numbers compare
WORK = PROJECT_ROOT / ".cache" / "experiments" / "transfer_vs_scratch"
SPLIT = (("george", "jackson"), "nicolas", "yweweler", 10)

RATES = ["3e-4", "1e-3", "3e-3"]  # the study's 1e-3 in the middle
SELECT_SEEDS, MORE_SEEDS = [0], [1, 2]
MAX_STEPS, VAL_EVERY, PATIENCE, BATCH = 2000, 50, 8, 8
CSV = HERE / "results.csv"
FIELDS = ["rate", "seed", "stage", "val/loss", "val/acc", "test/acc", "test/acc_ci95_low", "test/acc_ci95_high",
          "test/f1", "steps", "best_step", "seconds"]  # fmt: skip


def run_one(rate: str, seed: int, work: Path) -> dict:
    from asr_transfer.config import compose
    from asr_transfer.pipeline.train import train

    out = work / f"lr{rate}-seed{seed}"
    paths = speaker_split(WORK, *SPLIT)
    overrides = [
        "data=manifest", *[f"data.{s}_manifest={p}" for s, p in paths.items()], f"paths.cache_dir={work / 'cache'}",
        "backbone=scratch", "backbone.hidden_size=128", "backbone.num_layers=2", f"task.backbone_lr={rate}",
        f"optimizer.lr={rate}", f"seed={seed}", f"data.batch_size={BATCH}", "optimized_metric=val/loss",
        "optimized_mode=min", f"callbacks.early_stopping.patience={PATIENCE}", "callbacks.last_every_n_steps=null",
        "trainer.max_epochs=-1", f"+trainer.max_steps={MAX_STEPS}", "trainer.check_val_every_n_epoch=null",
        f"+trainer.val_check_interval={VAL_EVERY}", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu", "logger=csv", f"paths.output_dir={out}",
    ]  # fmt: skip
    cfg = compose(overrides)
    t = time.perf_counter()
    train(cfg)
    m = json.loads((out / "metrics.json").read_text())
    logged = list(csv.DictReader(open(next(out.glob("csv/**/metrics.csv")))))
    steps = max(int(r["step"]) + 1 for r in logged if r.get("val/loss"))
    best = int(next((out / "checkpoints").glob("best-*.ckpt")).stem.rsplit("-", 1)[-1])
    return {
        "rate": rate, "seed": seed, "stage": "select" if seed in SELECT_SEEDS else "more seeds",
        **{k: round(m[k], 4) for k in FIELDS[3:9]}, "steps": steps, "best_step": best,
        "seconds": round(time.perf_counter() - t, 1),
    }  # fmt: skip


def read_rows() -> list[dict]:
    return list(csv.DictReader(CSV.open())) if CSV.is_file() else []


README = """# The scratch baseline, trained to convergence with its own rate chosen on val

`python -m experiments.scratch_baseline.run` (resumable; `--table` rebuilds this file from `results.csv`).
Split of `experiments/transfer_vs_scratch` at k=all: train george + jackson (1000 clips), val the fixed
100-clip subset of nicolas, test yweweler (500 clips). Encoder `backbone=scratch` (log-mel + 2-layer
transformer, d=128, random init), weighted layer sum, linear head; AdamW with one rate for encoder and head,
batch 8, warm-up + cosine over {max_steps} steps (16 epochs), validated every {val_every} steps, best val loss kept,
stopped after {patience} validations without a better one. The rate is chosen by
`asr_transfer.selection.choose_on_val` on the best val loss (seed {select_seeds}; the val acc column is the
last validation's); the chosen rate then runs seeds
{more_seeds}. Test intervals: the run's bootstrap over its 500 test clips; over seeds: the t-interval.
`seconds` is wall time on a 2-core VM shared with ~8 other jobs.

| rate | seed | val loss | val acc | test acc [95 % CI over clips] | steps run | best step | seconds |
|---|---|---|---|---|---|---|---|
{rows}

{verdict}
"""


def table(rows: list[dict]) -> str:
    sel = [r for r in rows if r["stage"] == "select"]
    chosen = choose_on_val(sel, "val/loss", setting="rate", mode="min")[()] if sel else None
    lines = []
    for r in rows:
        mark = " **(chosen)**" if r["rate"] == chosen else ""
        lines.append(
            f"| {r['rate']}{mark} | {r['seed']} | {float(r['val/loss']):.3f} | {float(r['val/acc']):.2f} | "
            f"{float(r['test/acc']):.3f} [{float(r['test/acc_ci95_low']):.3f}, {float(r['test/acc_ci95_high']):.3f}] | "
            f"{r['steps']} | {r['best_step']} | {r['seconds']} |"
        )
    verdict = "No run finished yet."
    if chosen:
        accs = [float(r["test/acc"]) for r in rows if r["rate"] == chosen]
        s = seed_summary(accs)
        spread = (f"mean {s['mean']:.3f} ± {s['std']:.3f} over {s['n']} seeds, 95 % t-interval "
                  f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]") if s["n"] > 1 else f"{s['mean']:.3f} (1 seed)"  # fmt: skip
        verdict = f"Chosen on val: rate **{chosen}**. Its test accuracy: **{spread}**."
    return README.format(rows="\n".join(lines), verdict=verdict, max_steps=MAX_STEPS, val_every=VAL_EVERY,
                         patience=PATIENCE, select_seeds=SELECT_SEEDS, more_seeds=MORE_SEEDS)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path("/tmp/scratch_baseline_work"))
    p.add_argument("--table", action="store_true")
    a = p.parse_args()
    rows = read_rows()
    done = {(r["rate"], str(r["seed"])) for r in rows}
    if not a.table:
        plan = [(rate, s) for rate in RATES for s in SELECT_SEEDS]
        for rate, seed in plan:
            if (rate, str(seed)) not in done:
                rows.append(run_one(rate, seed, a.work))
                write_csv(CSV, rows, FIELDS)
        chosen = choose_on_val(
            [r for r in rows if r["stage"] == "select"], "val/loss", setting="rate", mode="min"
        )[()]
        for seed in MORE_SEEDS:
            if (chosen, str(seed)) not in {(r["rate"], str(r["seed"])) for r in rows}:
                rows.append(run_one(chosen, seed, a.work))
                write_csv(CSV, rows, FIELDS)
    text = table(rows)
    write_text(HERE / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
