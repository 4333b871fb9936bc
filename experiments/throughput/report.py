"""The benchmark's tables: one row per run, the ratios the issue asks for, as rich / CSV / Markdown."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asr_transfer.utils.atomic import write_text

# (column, header, format) of the per-run table; results.csv has these columns and a few more.
RUN_COLUMNS = [
    ("job", "Job", "{}"),
    ("system", "System", "{}"),
    ("wall_s", "Wall s", "{:.1f}"),
    ("peak_rss_mib", "Peak RSS MiB", "{:.0f}"),
    ("gpu_peak_mib", "GPU peak MiB", "{:.0f}"),  # shown only when a run used a GPU
    ("test_acc", "Test acc", "{:.3f}"),
    ("s_per_step", "s/step", "{:.3f}"),
    ("s_per_epoch", "s/epoch (est.)", "{:.0f}"),
    ("detail", "Detail", "{}"),
]
CSV_EXTRA = ["tree_peak_mib", "train_s", "test_s", "steps", "clips", "returncode", "log"]


def find(rows: list[dict], job: str, system: str) -> dict:
    return next((r for r in rows if r["job"] == job and r["system"] == system and r["returncode"] == 0), {})


def ratio(a, b):
    return a / b if a is not None and b else None


def comparisons(rows: list[dict]) -> list[dict]:
    """The issue's acceptance figures: (what, value, target, pass) wherever both sides ran."""
    cold, warm = find(rows, "A", "asr_transfer (cold cache)"), find(rows, "A", "asr_transfer (warm cache)")
    hf_a, floor = find(rows, "A", "Trainer recipe"), find(rows, "C", "bare encoder forward")
    hf_b = find(rows, "B", "Trainer recipe")
    items = [
        ("A: Trainer recipe wall / asr_transfer cold wall", ratio(hf_a.get("wall_s"), cold.get("wall_s")), ">=", 50),
        ("A: asr_transfer test accuracy", cold.get("test_acc"), ">=", 0.95),
        ("A: Trainer recipe test accuracy", hf_a.get("test_acc"), None, None),
        ("A: asr_transfer cold wall / floor C wall", ratio(cold.get("wall_s"), floor.get("wall_s")), "<=", 2),
        ("A: asr_transfer warm wall / cold wall", ratio(warm.get("wall_s"), cold.get("wall_s")), "<=", 0.5),
        ("A: Trainer recipe peak RSS / asr_transfer cold peak RSS", ratio(hf_a.get("peak_rss_mib"), cold.get("peak_rss_mib")), None, None),
    ]  # fmt: skip
    # B: an epoch is the same data on both sides; with 8 clips per batch s/epoch = s/step x 188 on
    # both, and a seconds budget packs the same epoch into fewer, fuller batches.
    for asr_b in (r for r in rows if r["job"] == "B" and r["system"].startswith("asr_transfer")):
        if asr_b["returncode"] != 0:
            continue
        name = asr_b["system"]
        items += [
            (f"B: Trainer recipe s/epoch / {name} s/epoch", ratio(hf_b.get("s_per_epoch"), asr_b.get("s_per_epoch")), ">=", 1.3),
            (f"B: {name} peak RSS / Trainer recipe peak RSS", ratio(asr_b.get("peak_rss_mib"), hf_b.get("peak_rss_mib")), "<=", 1.0),
        ]  # fmt: skip
        if asr_b.get("gpu_peak_mib") and hf_b.get("gpu_peak_mib"):
            items.append(
                (f"B: {name} GPU peak / Trainer recipe GPU peak", ratio(asr_b["gpu_peak_mib"], hf_b["gpu_peak_mib"]), "<=", 1.0)
            )  # fmt: skip
    out = []
    for what, value, op, target in items:
        ok = None
        if value is not None and op:
            ok = value >= target if op == ">=" else value <= target
        out.append({"comparison": what, "value": value, "target": f"{op} {target}" if op else "", "pass": ok})
    return out


def cell(value, fmt: str) -> str:
    return "n/a" if value is None or value == "" else fmt.format(value)


def verdict(ok) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def print_tables(rows: list[dict], comps: list[dict], title: str) -> None:
    console = Console(width=None if sys.stdout.isatty() else 150)  # logs: don't wrap at 80 columns
    runs = Table(title=title)
    cols = columns(rows)
    for _, header, _ in cols:
        runs.add_column(header)
    for r in rows:
        runs.add_row(*(cell(r.get(k), fmt) for k, _, fmt in cols))
    console.print(runs)
    ratios = Table(title="Side by side")
    for header in ("Comparison", "Value", "Target", "Met"):
        ratios.add_column(header)
    for c in comps:
        ratios.add_row(c["comparison"], cell(c["value"], "{:.3g}"), c["target"], verdict(c["pass"]))
    console.print(ratios)


def columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The per-run columns, without the GPU one on a CPU-only run."""
    gpu = any(r.get("gpu_peak_mib") for r in rows)
    return [c for c in RUN_COLUMNS if gpu or c[0] != "gpu_peak_mib"]


def markdown(rows: list[dict], comps: list[dict], info: dict) -> str:
    cols = columns(rows)
    lines = [" | ".join(h for _, h, _ in cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(cell(r.get(k), fmt) for k, _, fmt in cols) for r in rows]
    lines += ["", "Comparison | Value | Target | Met", "--- | --- | --- | ---"]
    lines += [
        f"{c['comparison']} | {cell(c['value'], '{:.3g}')} | {c['target']} | {verdict(c['pass'])}"
        for c in comps
    ]
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    return "\n".join("| " + line + " |" if " | " in line else line for line in lines) + "\n"


def write_csv(path: Path, rows: list[dict], comps: list[dict]) -> None:
    """One row per run, then one per comparison (``job`` = ``ratio``), so a single file holds both."""
    fields = [k for k, _, _ in RUN_COLUMNS] + CSV_EXTRA + ["comparison", "value", "target", "pass"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    w.writerows({"job": "ratio", **c} for c in comps)
    write_text(path, buf.getvalue())
