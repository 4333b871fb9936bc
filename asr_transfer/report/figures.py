"""The report's figures (matplotlib object API, no pyplot state); each returns a ``Figure`` or None."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from asr_transfer.report.align import word_errors
from asr_transfer.utils.numbers import finite_float


def learning_curves(rows: list[dict]) -> Figure | None:
    """Loss and metric columns of the CSV log against the step, one panel each (loss | other)."""
    if len({r.get("step") for r in rows}) < 2:  # one point in time (a probe=lbfgs fit): no curve to draw
        return None
    keys = [k for k in rows[0] if "/" in k and any(finite_float(r.get(k)) is not None for r in rows)]
    groups = {
        "loss": [k for k in keys if k.endswith("loss")],
        "metrics": [k for k in keys if not k.endswith("loss")],
    }
    groups = {g: ks for g, ks in groups.items() if ks}
    if not groups:
        return None
    fig = Figure(figsize=(4.2 * len(groups), 3.2))
    for n, (group, ks) in enumerate(groups.items(), 1):
        ax = fig.add_subplot(1, len(groups), n)
        for k in ks:
            pts = [
                (finite_float(r.get("step")), finite_float(r[k]))
                for r in rows
                if finite_float(r.get(k)) is not None
            ]
            pts = [(s, v) for s, v in pts if s is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="." if len(pts) < 60 else None, label=k)
        ax.set_xlabel("step")
        ax.set_title(group)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def wer_by_length(transcripts: list[dict]) -> Figure | None:
    """Corpus WER of the test transcripts grouped by reference length in words."""
    errors, words = defaultdict(int), defaultdict(int)
    for t in transcripts:
        n = len(t["ref"].split())
        errors[n] += word_errors(t["ref"], t["pred"])
        words[n] += n
    lengths = sorted(n for n in words if words[n])
    if not lengths:
        return None
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    ax.bar(lengths, [100.0 * errors[n] / words[n] for n in lengths], color="tab:orange")
    for n in lengths:
        ax.annotate(f"{words[n] // max(n, 1)}", (n, 0), ha="center", va="bottom", fontsize=7, color="black")
    ax.set_xlabel("reference length (words); numbers: utterances")
    ax.set_ylabel("WER %")
    ax.set_title("test WER by utterance length")
    fig.tight_layout()
    return fig


def layer_curve(rows: list[dict], weights: list[float] | None = None) -> Figure | None:
    """layers.csv: val/test metric per single layer (lines) with the weighted sum and concat as
    horizontal references; the weighted sum's weights as bars on a second axis."""
    single = [r for r in rows if str(r["layer"]).isdigit()]
    if not single:
        return None
    metric = next(k for k in rows[0] if k.startswith("val/"))
    test = "test/" + metric.split("/", 1)[1]
    x = [int(r["layer"]) for r in single]
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    if weights:
        ax2 = ax.twinx()
        ax2.bar(range(len(weights)), weights, color="tab:grey", alpha=0.3, label="weighted-sum weight")
        ax2.set_ylabel("weight")
    for key, style in ((metric, "o-"), (test, "s--")):
        if key in single[0]:
            ax.plot(x, [finite_float(r[key]) for r in single], style, label=key)
    colours = iter(["tab:green", "tab:red", "tab:purple"])
    for r in rows:
        if not str(r["layer"]).isdigit() and finite_float(r.get(test)) is not None:
            ax.axhline(
                finite_float(r[test]), ls=":", color=next(colours, "black"), label=f"{r['layer']} ({test})"
            )
    ax.set_xticks(x)
    ax.set_xlabel("hidden layer (0 = input to the transformer)")
    ax.set_ylabel("metric")
    ax.set_title("layer-wise probe")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def metric_vs_param(values: list, metric: list[float], param: str, metric_name: str) -> Figure:
    """One swept parameter: numbers on a (log when spanning >= 2 decades) x axis, categories as strips."""
    fig = Figure(figsize=(3.8, 3.0))
    ax = fig.add_subplot()
    nums = [finite_float(v) for v in values]
    if all(v is not None for v in nums):
        ax.scatter(nums, metric)
        pos = [v for v in nums if v > 0]
        if len(pos) == len(nums) and max(pos) / min(pos) >= 100:
            ax.set_xscale("log")
    else:
        cats = sorted({str(v) for v in values})
        ax.scatter([cats.index(str(v)) for v in values], metric)
        ax.set_xticks(range(len(cats)), cats, rotation=30)
    ax.set_xlabel(param)
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def segments_over_spectrogram(
    wav, sample_rate: int, ref: list, pred: list, title: str, labels: list[str] | None = None
) -> Figure:
    """A clip's spectrogram (matplotlib's ``specgram``, 25 ms windows) above two strips on its time axis:
    the reference segments and the predicted ones, ``(start s, end s, label)`` each, one colour per label."""
    seconds = len(wav) / sample_rate
    names = labels or sorted({str(s[2]) for s in [*ref, *pred]})
    colour = {n: f"C{k % 10}" for k, n in enumerate(names)}
    fig = Figure(figsize=(7.5, 3.2))
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 0.6, 0.6], hspace=0.08)
    spec = fig.add_subplot(grid[0])
    window = max(int(0.025 * sample_rate), 16)
    # a -100 dB dither: digital silence (exact zeros, e.g. the gaps of joined recordings) has no log power
    dither = 1e-5 * np.random.default_rng(0).standard_normal(len(wav))
    spec.specgram(
        wav + dither,
        NFFT=window,
        Fs=sample_rate,
        noverlap=window * 3 // 5,
        cmap="magma",
        xextent=(0, seconds),
    )
    spec.set_ylabel("Hz")
    spec.set_title(title, fontsize=9)
    spec.tick_params(labelbottom=False)
    for row, (name, segs) in enumerate((("reference", ref), ("predicted", pred)), start=1):
        ax = fig.add_subplot(grid[row], sharex=spec)
        for start, end, label in segs:
            ax.axvspan(float(start), float(end), color=colour.get(str(label), "grey"), alpha=0.75)
            ax.text((float(start) + float(end)) / 2, 0.5, str(label), ha="center", va="center", fontsize=8)
        ax.set_yticks([0.5], [name], fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelbottom=row == 2)
    spec.set_xlim(0, seconds)
    ax.set_xlabel("time (s)")
    fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.14)
    return fig
