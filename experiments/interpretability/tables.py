"""README tables and plots of the interpretability study, from its CSVs (``run.py --table``)."""

from __future__ import annotations

import csv
from pathlib import Path

from asr_transfer.stats import proportion_interval
from asr_transfer.utils.atomic import atomic_path, replace_between

TEST_CLIPS = 500  # yweweler: every clip
START, END = "<!-- tables:start -->", "<!-- tables:end -->"


def read(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.is_file() else []


def acc(x: float) -> str:
    lo, hi = proportion_interval(x * TEST_CLIPS, TEST_CLIPS)
    return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"


def ratio(by: dict[float, dict], share: float) -> str:
    """How many times more accuracy falls deleting ``share`` by attribution than at random."""
    base = float(by[0.0]["attribution"])
    d_attr = base - float(by[share]["attribution"])
    d_rand = base - float(by[share]["random"])
    if d_rand <= 0:
        return f"inf (random {0.0 - d_rand + 0.0:+.3f})" if d_attr > 0 else "-"
    return f"{d_attr / d_rand:.1f}x"


def faithfulness_table(rows: list[dict]) -> str:
    out = [
        "| model | method | deletion | acc, nothing deleted | top 20 % deleted | random 20 % deleted | "
        "drop ratio at 20 % | at 30 % | at 50 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, dict[float, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"], r["deletion"]), {})[float(r["share"])] = r
    for (model, method, deletion), by in groups.items():
        base = float(by[0.0]["attribution"])
        out.append(
            f"| {model} | {method} | {deletion} | {acc(base)} | {acc(float(by[0.2]['attribution']))} | "
            f"{acc(float(by[0.2]['random']))} | {ratio(by, 0.2)} | {ratio(by, 0.3)} | {ratio(by, 0.5)} |"
        )
    return "\n".join(out)


def padding_table(rows: list[dict]) -> str:
    out = [
        "| model | method | acc on padded clips | mean share on speech | median | 10th percentile | clips >= 90 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['method']} | {acc(float(r['acc_padded']))} | {float(r['mean_share']):.3f} | "
            f"{float(r['median_share']):.3f} | {float(r['p10_share']):.3f} | {float(r['clips_at_90pct']):.3f} |"
        )
    return "\n".join(out)


def drift_table(rows: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    layers = sorted({int(r["layer"]) for r in rows})
    by = {(r["model"], int(r["layer"])): r for r in rows}
    head = "| hidden state | " + " | ".join(f"{m}: CKA | {m}: weight change" for m in models) + " |"
    out = [head, "|---|" + "---|---|" * len(models)]
    for k in layers:
        cells = [f"{float(by[m, k]['cka']):.4f} | {float(by[m, k]['weight_change']):.4f}" for m in models]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def layers_table(rows: list[dict]) -> str:
    out = [
        "| layer | probe val acc | probe test acc | silhouette by digit (test) | silhouette by speaker (train) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["layer"].isdigit():
            out.append(
                f"| {r['layer']} | {float(r['val/acc']):.3f} | {acc(float(r['test/acc']))} | "
                f"{float(r['silhouette_label']):.3f} | {float(r['silhouette_speaker']):.3f} |"
            )
    return "\n".join(out)


def plots(here: Path) -> None:
    from matplotlib.figure import Figure

    faith = read(here / "faithfulness.csv")
    if faith:
        models = list(dict.fromkeys(r["model"] for r in faith))
        fig = Figure(figsize=(4.5 * len(models), 3.4))
        for i, model in enumerate(models):
            ax = fig.add_subplot(1, len(models), i + 1)
            for deletion, style in (("mask", "-"), ("zero", ":")):
                rows = [r for r in faith if r["model"] == model and r["deletion"] == deletion]
                for method in dict.fromkeys(r["method"] for r in rows):
                    mine = [r for r in rows if r["method"] == method]
                    shares = [float(r["share"]) for r in mine]
                    ax.plot(
                        shares,
                        [float(r["attribution"]) for r in mine],
                        style,
                        marker="o",
                        ms=3,
                        label=f"{method}, {deletion}",
                    )
                ax.plot(
                    shares,
                    [float(r["random"]) for r in mine],
                    style,
                    color="black",
                    label=f"random, {deletion}",
                )
            ax.set_title(model, fontsize=9)
            ax.set_xlabel("share of frames deleted")
            ax.set_ylabel("test accuracy")
        ax.legend(fontsize=6)
        fig.tight_layout()
        with atomic_path(here / "faithfulness.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    drift = read(here / "drift.csv")
    if drift:
        fig = Figure(figsize=(5, 3.4))
        ax = fig.add_subplot()
        for model in dict.fromkeys(r["model"] for r in drift):
            rows = [r for r in drift if r["model"] == model]
            ax.plot([int(r["layer"]) for r in rows], [1 - float(r["cka"]) for r in rows], "o-", label=model)
        ax.set_xlabel("hidden state (0 = input embedding)")
        ax.set_ylabel("1 - linear CKA vs pretrained")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(here / "drift.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    layers = [r for r in read(here / "layers.csv") if r["layer"].isdigit()]
    if layers:
        fig = Figure(figsize=(5, 3.4))
        ax = fig.add_subplot()
        k = [int(r["layer"]) for r in layers]
        ax.plot(k, [float(r["test/acc"]) for r in layers], "o-", label="probe test acc")
        ax.plot(k, [float(r["silhouette_label"]) for r in layers], "s--", label="silhouette by digit")
        ax.plot(k, [float(r["silhouette_speaker"]) for r in layers], "^:", label="silhouette by speaker")
        ax.set_xlabel("hidden state (0 = input embedding)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(here / "layers.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)


def write_tables(here: Path) -> str:
    parts = []
    for title, name, fn in (
        ("Deletion test (faithfulness)", "faithfulness", faithfulness_table),
        ("Attribution on the speech of clips padded with 0.5 s of silence", "padding", padding_table),
        ("Drift per hidden state against the pretrained encoder", "drift", drift_table),
        ("Layer-wise probe and silhouettes (pooled vectors)", "layers", layers_table),
    ):
        rows = read(here / f"{name}.csv")
        if rows:
            parts.append(f"**{title}** (`{name}.csv`)\n\n{fn(rows)}")
    plots(here)
    text = "\n\n".join(parts)
    replace_between(here / "README.md", START, END, text)
    return text
