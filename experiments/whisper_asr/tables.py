"""results.csv and the README tables it generates (``python -m experiments.whisper_asr.run --table``)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from experiments.whisper_asr.cells import BUDGETS, FIELDS, HERE, METHODS, WINDOWS


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict]) -> None:
    from asr_transfer.utils.atomic import atomic_open

    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def key(r: dict) -> tuple:
    return (r["method"], r["budget"], str(r["seed"]), str(r["n_eval"]))


def _num(rows: list[dict], col: str, digits: int = 3) -> str:
    """Mean over seeds, with the seed standard deviation when there are several."""
    xs = [float(r[col]) for r in rows if r.get(col) not in ("", None)]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}g}"
    return f"{statistics.fmean(xs):.{digits}g} ± {statistics.stdev(xs):.2g}"


def _ci(r: dict, metric: str) -> str:
    lo, hi = r.get(f"{metric}_ci95_low"), r.get(f"{metric}_ci95_high")
    return f"[{float(lo):.3g}, {float(hi):.3g}]" if lo not in ("", None) and hi not in ("", None) else "-"


def table(rows: list[dict]) -> str:
    """README's table: one line per (method, budget), mean ± sd over seeds, the first seed's 95 % bootstrap
    intervals over test clips (``metrics.json``), numbers from results.csv."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"], r["n_eval"]), []).append(r)
    cols = ["val_wer", "test_wer", "test_wer_raw", "test_der", "test_cer", "test_hallucination", "s_per_step",
            "peak_rss_mb", "ckpt_mb", "store_kb_per_clip", "eval_s", "cpu_s"]  # fmt: skip
    head = cols[:2] + ["test_wer 95 % CI (seed 0)"] + cols[2:4] + ["test_der 95 % CI (seed 0)"] + cols[4:]
    lines = ["| method | strings | eval/speaker | seeds | " + " | ".join(head) + " |",
             "|---" * (len(head) + 4) + "|"]  # fmt: skip
    order = {m: i for i, m in enumerate(METHODS)}
    for (method, budget, n_eval), rs in sorted(
        groups.items(), key=lambda g: (g[0][1] != "-", g[0][1], order[g[0][0]])
    ):
        rs = sorted(rs, key=lambda r: int(r["seed"]))
        vals = [_num(rs, c) for c in cols]
        vals = vals[:2] + [_ci(rs[0], "test_wer")] + vals[2:4] + [_ci(rs[0], "test_der")] + vals[4:]
        n = "-" if budget == "-" else str(2 * BUDGETS[budget])
        lines.append(f"| {method} | {n} | {n_eval} | {len(rs)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def window_choice(rows: list[dict]) -> tuple[dict[str, str], str]:
    """``backbone.pad_to_30s`` chosen on val WER (``selection.choose_on_val``), zero-shot and after
    fine-tuning the decoder (budget 50, seed 0), each window's cells side by side; the preset's default
    follows the fine-tuned choice (what ``experiment=fsdd_digits_whisper`` trains)."""
    from asr_transfer.selection import choose_on_val

    cells = [
        {**r, "stage": "fine-tuned" if METHODS[r["method"]][1] else "zero-shot", "window": WINDOWS[r["method"]],
         "val/wer": r["val_wer"]}
        for r in rows
        if r["method"] in WINDOWS and r["seed"] == "0" and r["budget"] in ("-", "50")
    ]  # fmt: skip
    if not cells:
        return {}, "(not run yet)"
    both = [r for r in cells if {c["window"] for c in cells if c["stage"] == r["stage"]} == {"real", "30s"}]
    chosen = (
        {g[0]: w for g, w in choose_on_val(both, "val/wer", "window", ("stage",), mode="min").items()}
        if both
        else {}
    )
    lines = ["| stage | window | val WER | val hallucination | test WER [95 % CI] | test DER [95 % CI] "
             "| test hallucination | store KB/clip | CPU s | wall s |", "|---" * 10 + "|"]  # fmt: skip
    for r in sorted(cells, key=lambda r: (r["stage"] != "zero-shot", r["window"] != "real")):
        mark = " **(chosen on val)**" if chosen.get(r["stage"]) == r["window"] else ""
        lines.append(
            f"| {r['stage']} | {r['window']}{mark} | {float(r['val_wer']):.3g} | {float(r['val_hallucination']):.2g} "
            f"| {float(r['test_wer']):.3g} {_ci(r, 'test_wer')} | {_num([r], 'test_der')} {_ci(r, 'test_der')} "
            f"| {float(r['test_hallucination']):.2g} | {r['store_kb_per_clip'] or '-'} | {r.get('cpu_s') or '-'} "
            f"| {r['seconds']} |"
        )
    return chosen, "\n".join(lines)


DOCS = HERE.parents[1] / "docs" / "how-to" / "seq2seq.md"  # its "Numbers" repeat the project README's table
# The project README's "Speech recognition" table: one row per route and label budget, in this order.
ROUTES = {
    "zero_shot": ("Whisper zero-shot, its own decoder", "`python eval.py experiment=fsdd_digits_whisper` (no checkpoint)"),
    "decoder": ("decoder fine-tuned from stored encoder states", "`python train.py experiment=fsdd_digits_whisper`"),
    "lora": ("LoRA, encoder + decoder", "`... adapter=lora decoder_adapter=lora head.freeze=all`"),
    "full": ("full fine-tuning", "`... backbone.freeze=none`"),
    "ctc": ("CTC head (BiLSTM) on the frozen encoder", "`python train.py experiment=fsdd_digits_ctc`"),
}  # fmt: skip


def routes(rows: list[dict]) -> str:
    """The project README's summary: test digit error rate in %, mean ± sd over seeds, the first seed's 95 %
    bootstrap interval."""
    lines = ["| route | command | labels | test digit error rate, % [95 % CI] | seeds |", "|---" * 5 + "|"]
    for method, (route, command) in ROUTES.items():
        for budget in ("-", *BUDGETS):
            rs = sorted(
                (r for r in rows if r["method"] == method and r["budget"] == budget),
                key=lambda r: int(r["seed"]),
            )
            if not rs:
                continue
            ders = [100 * float(r["test_der"]) for r in rs]
            der = (
                f"{ders[0]:.1f}"
                if len(ders) == 1
                else f"{statistics.fmean(ders):.1f} ± {statistics.stdev(ders):.1f}"
            )
            lo, hi = (100 * float(rs[0][f"test_der_ci95_{k}"]) for k in ("low", "high"))
            labels = "none" if budget == "-" else f"{2 * BUDGETS[budget]} strings"
            lines.append(f"| {route} | {command} | {labels} | {der} [{lo:.1f}, {hi:.1f}] | {len(rs)} |")
    return "\n".join(lines)


def write_tables(rows: list[dict]) -> None:
    from asr_transfer.utils.atomic import replace_between

    readme = HERE / "README.md"
    replace_between(readme, "<!-- table:start -->", "<!-- table:end -->", table(rows))
    for path, marker in ((HERE.parents[1] / "README.md", "whisper_asr"), (DOCS, "numbers")):
        replace_between(path, f"<!-- {marker}:start -->", f"<!-- {marker}:end -->", routes(rows))
    chosen, text = window_choice(rows)
    replace_between(readme, "<!-- window:start -->", "<!-- window:end -->", text)
    print(table(rows), text, f"window chosen on val: {chosen}", sep="\n\n")
