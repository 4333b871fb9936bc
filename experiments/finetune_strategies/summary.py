"""Summary of results.csv + cost.csv: mean ± std over seeds per (backbone, budget, method, aug) -> summary.csv,
a markdown table (printed) and results.png (accuracy per test condition, one panel per backbone/budget/aug)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

TESTS = ["clean", "white_10dB", "white_0dB", "babble_10dB", "babble_0dB"]
ORDER = ["probe", "top2", "full", "lora", "bottleneck", "lld", "staged"]
ORDER += ["full_lr3e-5", "lora_lr3e-4", "lora_r32", "bottleneck_lr3e-4"]  # run.py --methods (tuning)
KEY = ("backbone", "budget", "method", "aug")


def mean_std(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in KEY), []).append(r)
    return dict(
        sorted(
            out.items(),
            key=lambda kv: (kv[0][0] != "tiny", kv[0][3] != "none", kv[0][1] != "5", ORDER.index(kv[0][2])),
        )
    )


def summarize(rows: list[dict], cost: list[dict]) -> list[dict]:
    costs = {(c["backbone"], c["method"]): c for c in cost}
    out = []
    for key, rs in groups(rows).items():
        s = dict(zip(KEY, key))
        s["seeds"] = len(rs)
        s["val_mean"] = round(statistics.fmean(100 * float(r["val_acc"]) for r in rs), 2)
        for t in TESTS:
            m, sd = mean_std([100 * float(r[t]) for r in rs])
            s[f"{t}_mean"], s[f"{t}_std"] = round(m, 2), round(sd, 2)
        s["trainable"] = max(int(r["trainable"]) for r in rs)
        s["trainable_pct"] = max(float(r["trainable_pct"]) for r in rs)
        s["ckpt_MB"] = round(statistics.fmean(int(r["ckpt_bytes"]) for r in rs) / 1e6, 2)
        s["steps"] = round(statistics.fmean(int(r["steps"]) for r in rs))
        c = costs.get((key[0], key[2]))
        s["s_per_step"] = float(c["s_per_step"]) if c else ""
        s["peak_rss_MB"] = round(int(c["peak_rss_bytes"]) / 2**20) if c else ""
        out.append(s)
    return out


def markdown(summary: list[dict]) -> str:
    head = [
        "backbone",
        "budget",
        "aug",
        "method",
        "seeds",
        "val",
        *TESTS,
        "trainable (%)",
        "ckpt MB",
        "s/step",
        "peak RSS MB",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for s in summary:
        acc = [f"{s[t + '_mean']:.1f} ± {s[t + '_std']:.1f}" for t in TESTS]
        tr = f"{s['trainable'] / 1e6:.3f} M ({s['trainable_pct']:.2f} %)"
        cells = [
            s["backbone"],
            s["budget"],
            s["aug"],
            s["method"],
            str(s["seeds"]),
            f"{s['val_mean']:.1f}",
            *acc,
            tr,
        ]
        cells += [f"{s['ckpt_MB']:.2f}", str(s["s_per_step"]), str(s["peak_rss_MB"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((s["backbone"], s["budget"], s["aug"]) for s in summary))
    cols = min(4, len(panels))  # one row per 4 panels: readable at page width
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        ss = [s for s in summary if (s["backbone"], s["budget"], s["aug"]) == panel]
        width = 0.8 / len(ss)
        for i, s in enumerate(ss):
            xs = [j + (i - len(ss) / 2 + 0.5) * width for j in range(len(TESTS))]
            ys = [s[t + "_mean"] for t in TESTS]
            es = [s[t + "_std"] for t in TESTS]
            colour = plt.get_cmap("tab20")(ORDER.index(s["method"]))  # one colour per method in every panel
            ax.bar(xs, ys, width, yerr=es, label=s["method"], capsize=1.5, color=colour)
        ax.set_xticks(range(len(TESTS)), [t.replace("_", "\n") for t in TESTS], fontsize=7)
        ax.set_title(f"whisper {panel[0]}, budget {panel[1]}, aug {panel[2]}", fontsize=9)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("test accuracy, yweweler (%)\nmean ± std over seeds")
    axes[0][0].legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_summary(here: Path) -> str:
    rows = list(csv.DictReader(open(here / "results.csv")))
    cost = list(csv.DictReader(open(here / "cost.csv"))) if (here / "cost.csv").is_file() else []
    summary = summarize(rows, cost)
    with open(here / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    plot(summary, here / "results.png")
    from equivalence import main as equivalence  # the "within 1 point" table: val-chosen, equal budgets, TOST

    equivalence()
    return markdown(summary)
