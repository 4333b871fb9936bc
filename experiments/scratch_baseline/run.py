"""The no-transfer baseline trained to convergence, with its own learning rate chosen on val.

    nice -n 10 python -m experiments.scratch_baseline.run      # resumable: finished runs in results.csv stay
    python -m experiments.scratch_baseline.run --table         # README.md from results.csv only

Same split as ``experiments/transfer_vs_scratch`` at k=all (train george + jackson, 1000 clips; val the fixed
100-clip subset of nicolas; test yweweler, 500 clips) and the same randomly initialised encoder
(``backbone=scratch``, d=128, 2 layers), but a budget long enough to converge: up to ``MAX_STEPS`` AdamW steps
of 8 clips (16 epochs), validated every ``VAL_EVERY`` steps, stopped after ``PATIENCE`` validations without a
lower val loss. The rate (head and encoder alike) is chosen by ``asr_transfer.selection.choose_on_val`` on
the best val loss (the monitored metric) over the selection seed(s); ``val/acc`` is that best checkpoint's.
The chosen rate then runs more seeds. Test is reported, never read.
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

# Rates are tried from the middle of this ladder (the study's 1e-3 and one step either side); a choice at an
# edge of the tried grid adds the next rung beyond it, so the chosen rate always has a worse one on each side
LADDER = ["3e-5", "1e-4", "3e-4", "1e-3", "3e-3", "1e-2"]
RATES = LADDER[2:5]
SELECT_SEEDS, MORE_SEEDS = [0], [1, 2]
MAX_STEPS, VAL_EVERY, PATIENCE, BATCH = 2000, 50, 8, 8
CSV = HERE / "results.csv"
# the early-stopped scratch and the frozen probe on the same split
TVS = HERE.parent / "transfer_vs_scratch" / "summary.csv"
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
    logged = [r for r in csv.DictReader(open(next(out.glob("csv/**/metrics.csv")))) if r.get("val/loss")]
    steps = max(int(r["step"]) + 1 for r in logged)
    best = int(next((out / "checkpoints").glob("best-*.ckpt")).stem.rsplit("-", 1)[-1])
    # val/acc in metrics.json is the last validation's; the tested checkpoint's is its own row in the log
    at_best = min(logged, key=lambda r: float(r["val/loss"]))
    return {
        "rate": rate, "seed": seed, "stage": "select" if seed in SELECT_SEEDS else "more seeds",
        **{k: round(m[k], 4) for k in FIELDS[3:9]}, "val/acc": round(float(at_best["val/acc"]), 4),
        "steps": steps, "best_step": best, "seconds": round(time.perf_counter() - t, 1),
    }  # fmt: skip


def read_rows() -> list[dict]:
    return list(csv.DictReader(CSV.open())) if CSV.is_file() else []


README = """# The scratch baseline, trained to convergence with its own rate chosen on val

`python -m experiments.scratch_baseline.run` (resumable; `--table` rebuilds this file from `results.csv`).
Split of `experiments/transfer_vs_scratch` at k=all: train george + jackson (1000 clips), val the fixed
100-clip subset of nicolas, test yweweler (500 clips). Encoder `backbone=scratch` (log-mel + 2-layer
transformer, d=128, random init), weighted layer sum, linear head; AdamW with one rate for encoder and head,
batch 8, warm-up + cosine over at most {max_steps} steps (16 epochs), validated every {val_every} steps, best val
loss kept, stopped after {patience} validations ({stop_steps} steps) without a better one. {capped}

**Rate, chosen on val.** Rates come from the ladder {ladder}: first the middle three (the study's 1e-3 and
one step either side); a choice at an edge of the tried grid adds the next rung beyond it. The rate is chosen
by `asr_transfer.selection.choose_on_val` on the best val loss (seed {select_seeds}; val acc is the tested
checkpoint's; {by_acc}); the chosen rate then runs seeds {more_seeds}. Test intervals:
the run's bootstrap over its 500 test clips; over seeds: the t-interval. `seconds`: wall time on the 2-core
VM, one thread, niced, beside the other helpers' jobs (load 2-4), not a speed figure.

| rate | seed | stage | val loss | val acc | test acc [95 % CI over clips] | steps run | best step | seconds |
|---|---|---|---|---|---|---|---|---|
{rows}

{verdict}

## What the earlier numbers were (0.455 vs 0.708), and which one to quote

| number | where | encoder | val | how long it trained | rate |
|---|---|---|---|---|---|
| {tvs_acc} ± {tvs_std} (5 seeds) | `experiments/transfer_vs_scratch/summary.csv`, k=all | d=128, 2 layers | 100 clips of nicolas, val loss | early stopping, patience 5 validations x 10 steps: stopped at 70-210 steps (1-2 epochs), at its first plateau | 1e-3 encoder / 2e-3 head, not tuned |
| 0.708 (1 run) | prose in `experiments/fsdd_speakers/README.md`, no CSV row | the default `backbone=scratch`, d=256, 4 layers | all 500 clips of nicolas, val accuracy | `experiment=fsdd_probe`: 20 epochs fixed (~1260 steps of 16) | 5e-3, the probe preset's head rate |
| this study | `results.csv` | d=128, 2 layers (as transfer_vs_scratch) | 100 clips of nicolas, val loss | to convergence on val loss (above) | chosen on val |

Same split, three protocols. {resolution}
"""


def table(rows: list[dict]) -> str:
    sel = [r for r in rows if r["stage"] == "select"]
    chosen = choose_on_val(sel, "val/loss", setting="rate", mode="min")[()] if sel else None
    lines = []
    for r in sorted(rows, key=lambda r: (float(r["rate"]), int(r["seed"]))):
        mark = " **(chosen)**" if r["rate"] == chosen else ""
        lines.append(
            f"| {r['rate']}{mark} | {r['seed']} | {r['stage']} | {float(r['val/loss']):.3f} | {float(r['val/acc']):.2f} | "
            f"{float(r['test/acc']):.3f} [{float(r['test/acc_ci95_low']):.3f}, {float(r['test/acc_ci95_high']):.3f}] | "
            f"{r['steps']} | {r['best_step']} | {r['seconds']} |"
        )
    tvs = next(r for r in csv.DictReader(TVS.open()) if r["method"] == "scratch" and r["k"] == "100")
    probe = next(r for r in csv.DictReader(TVS.open()) if r["backbone"] == "tiny" and r["method"] == "probe"
                 and r["k"] == "100")  # fmt: skip
    at_cap = [r for r in rows if int(r["steps"]) >= MAX_STEPS]
    capped = (f"{len(at_cap)} of {len(rows)} runs reached the step cap (a lower bound there)." if at_cap else
              "Every run below stopped on that rule before the step cap: trained to convergence on val loss.")  # fmt: skip
    # chance is ln 10 = 2.30: a best val loss above 2.0 means the rule stopped the run on an early plateau
    plateau = [f"{r['rate']} seed {r['seed']} (best {float(r['val/loss']):.2f} at step {r['best_step']})"
               for r in rows if float(r["val/loss"]) > 2.0]  # fmt: skip
    if plateau:
        capped += (" On 100 noisy val clips the rule can still stop a run on an early plateau near chance "
                   f"(ln 10 = 2.30): {', '.join(plateau)}.")  # fmt: skip
    by_acc = ""
    if sel:
        acc_choice = choose_on_val(sel, "val/acc", setting="rate", mode="max")[()]
        by_acc = "val acc picks the same rate" if acc_choice == chosen else f"val acc would pick {acc_choice}"
    verdict, resolution = "No run finished yet.", "This study's runs have not finished."
    if chosen:
        accs = [float(r["test/acc"]) for r in rows if r["rate"] == chosen]
        s = seed_summary(accs)
        spread = (f"mean {s['mean']:.3f} ± {s['std']:.3f} over {s['n']} seeds, 95 % t-interval "
                  f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]") if s["n"] > 1 else f"{s['mean']:.3f} (1 seed)"  # fmt: skip
        verdict = f"Chosen on val: rate **{chosen}**. Its test accuracy: **{spread}**."
        tried = sorted({r["rate"] for r in sel}, key=LADDER.index)
        i = LADDER.index(chosen)
        beyond = LADDER[i - 1] if chosen == tried[0] and i > 0 else None
        beyond = beyond or (LADDER[i + 1] if chosen == tried[-1] and i < len(LADDER) - 1 else None)
        if beyond:
            verdict += (
                f" The choice is at the edge of the rates tried; the next rung ({beyond}) has not run yet."
            )
        if s["n"] > 1:
            p = float(probe["acc_mean"])
            resolution = (
                f"{float(tvs['acc_mean']):.3f} is what early stopping at the first plateau gives (a lower bound, "
                f"as that study says); 0.708 is one run of a larger encoder with a fixed 20-epoch budget and a "
                f"larger val set, so it is not the same baseline. The converged baseline of transfer_vs_scratch's "
                f"own encoder, with its rate chosen on val, is **{s['mean']:.3f} ± {s['std']:.3f}** "
                f"({s['n']} seeds, t-interval [{s['ci_low']:.3f}, {s['ci_high']:.3f}]): quote this one. Against "
                f"the frozen tiny.en probe's {p:.3f} on the same split (transfer_vs_scratch, k=all), transfer is "
                f"worth **{p - s['mean']:.2f}** at k=all ({p - s['ci_high']:.2f} to {p - s['ci_low']:.2f} over "
                f"the seed interval), not 0.52."
            )
    return README.format(
        rows="\n".join(lines), verdict=verdict, max_steps=MAX_STEPS, val_every=VAL_EVERY, patience=PATIENCE,
        stop_steps=PATIENCE * VAL_EVERY, ladder="{" + ", ".join(LADDER) + "}", select_seeds=", ".join(map(str, SELECT_SEEDS)),
        more_seeds=" and ".join(map(str, MORE_SEEDS)), tvs_acc=f"{float(tvs['acc_mean']):.3f}", tvs_std=f"{float(tvs['acc_std']):.3f}",
        resolution=resolution, capped=capped, by_acc=by_acc,
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path("/tmp/scratch_baseline_work"))
    p.add_argument("--table", action="store_true")
    a = p.parse_args()
    rows = read_rows()
    done = {(r["rate"], str(r["seed"])) for r in rows}
    if not a.table:
        grid = list(RATES)
        while True:
            for rate, seed in [(rate, s) for rate in grid for s in SELECT_SEEDS]:
                if (rate, str(seed)) not in done:
                    rows.append(run_one(rate, seed, a.work))
                    done.add((rate, str(seed)))
                    write_csv(CSV, rows, FIELDS)
            chosen = choose_on_val(
                [r for r in rows if r["stage"] == "select" and r["rate"] in grid],
                "val/loss",
                setting="rate",
                mode="min",
            )[()]
            i = LADDER.index(chosen)
            if chosen == grid[0] and i > 0:
                grid.insert(0, LADDER[i - 1])
            elif chosen == grid[-1] and i < len(LADDER) - 1:
                grid.append(LADDER[i + 1])
            else:
                break
        for seed in MORE_SEEDS:
            if (chosen, str(seed)) not in {(r["rate"], str(r["seed"])) for r in rows}:
                rows.append(run_one(chosen, seed, a.work))
                write_csv(CSV, rows, FIELDS)
    text = table(rows)
    write_text(HERE / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
