"""Whisper's own decoder vs. its zero-shot baseline vs. the CTC head, on connected FSDD digit strings.

    python -m experiments.whisper_asr.run                     # runs the cells results.csv lacks, then the tables
    python -m experiments.whisper_asr.run --table             # only rebuild README's tables from results.csv
    python -m experiments.whisper_asr.run --only zero_shot    # one method
    python -m experiments.whisper_asr.run --eval-per-speaker 20 --seeds 0   # a smaller study (say so)

Data: ``data=fsdd_digits`` as in ``experiment=fsdd_digits_ctc`` (train george + jackson, val nicolas,
test yweweler; 2-7 digits a string). Budgets: ~50 training strings (25 per speaker) and all (400 per
speaker). Every choice is made on val (the window: ``backbone.pad_to_30s``, ``window_choice``; the
checkpoint: best val/wer).
Each cell runs in its own process (``--cell``), so its peak RSS is its own; finished cells are merged
into results.csv atomically, so a killed study loses one cell and a restart skips what is done.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from asr_transfer.config import PROJECT_ROOT as ROOT
from experiments.whisper_asr.cells import (
    BUDGETS,
    HERE,
    METHODS,
    WINDOWS,
    backfill,
    cell,
)
from experiments.whisper_asr.tables import key, read_csv, write_csv, write_tables


def plan(methods: list[str], budgets: list[str], seeds: list[int], n_eval: int) -> list[dict]:
    """Cells in priority order: zero-shot (one seed), then per budget and seed every training method; the
    window question's real-length fine-tuning cell only at budget 50, seed 0."""
    cells = [{"method": m, "budget": "50", "seed": 0, "n_eval": n_eval} for m in methods if not METHODS[m][1]]
    for budget in budgets:
        for seed in seeds:
            for m in methods:
                if METHODS[m][1] and (m not in WINDOWS or WINDOWS[m] == "30s" or (budget, seed) == ("50", 0)):
                    cells.append({"method": m, "budget": budget, "seed": seed, "n_eval": n_eval})
    return cells


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cell", help="internal: one cell as JSON, its row printed as JSON")
    p.add_argument("--table", action="store_true")
    p.add_argument("--only", nargs="*", default=list(METHODS))
    p.add_argument("--budgets", nargs="*", default=list(BUDGETS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--eval-per-speaker", type=int, default=100)
    args = p.parse_args()
    if args.cell:
        print("ROW " + json.dumps(cell(**json.loads(args.cell))))
        return
    results = HERE / "results.csv"
    if not args.table:
        for c in plan(args.only, args.budgets, args.seeds, args.eval_per_speaker):
            row_key = (
                c["method"],
                c["budget"] if METHODS[c["method"]][1] else "-",
                str(c["seed"]),
                str(c["n_eval"]),
            )
            if row_key in {key(r) for r in read_csv(results)}:
                continue
            out = subprocess.run(
                [sys.executable, "-m", "experiments.whisper_asr.run", "--cell", json.dumps(c)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            rows = [json.loads(x[4:]) for x in out.stdout.splitlines() if x.startswith("ROW ")]
            if not rows:
                print(f"cell {c} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                continue
            write_csv(results, [r for r in read_csv(results) if key(r) != row_key] + rows)
            print(rows[0], flush=True)
    write_csv(results, [backfill(r) for r in read_csv(results)])
    write_tables(read_csv(results))


if __name__ == "__main__":
    main()
