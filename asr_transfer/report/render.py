"""Assemble the report's context from a run or sweep directory and render the Jinja2 templates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from asr_transfer.data.targets import natural_key
from asr_transfer.plots import confusion_figure, layer_weights_figure, per_class_rows
from asr_transfer.report import figures
from asr_transfer.report.align import align_words, word_errors
from asr_transfer.report.interpret import interpret_context
from asr_transfer.report.media import audio_uri, figure_uri, read_audio
from asr_transfer.report.rundir import is_sweep, load_run, load_sweep
from asr_transfer.utils.numbers import finite_float

log = logging.getLogger(__name__)
SEGMENT_FIGURES = 6  # a frames run: at most this many clips drawn with their segments (one PNG each)


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("asr_transfer.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,  # a missing context key fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["zip"] = zip
    return env


def _uri(fig) -> str | None:
    return None if fig is None else figure_uri(fig)


def worst_clips(predictions: list[dict], n: int, max_audio_s: float) -> list[dict]:
    """Misclassified clips first, most confidently wrong first; then the least confident correct ones."""

    def true_prob(p: dict) -> float:
        return p["probs"][p["top"].index(p["ref"])] if p["ref"] in p["top"] else 0.0

    ranked = sorted(predictions, key=lambda p: (p["pred"] == p["ref"], true_prob(p)))
    out = []
    for p in ranked[:n]:
        out.append(
            {
                **p,
                "correct": p["pred"] == p["ref"],
                "true_prob": true_prob(p),
                "audio": audio_uri(p["audio_filepath"], max_audio_s) if p.get("audio_filepath") else None,
                "name": Path(p.get("audio_filepath", str(p["index"]))).name,
            }
        )
    return out


def worst_transcripts(transcripts: list[dict], n: int, max_audio_s: float) -> list[dict]:
    scored = []
    for t in transcripts:
        words = max(len(t["ref"].split()), 1)
        errors = word_errors(t["ref"], t["pred"])
        scored.append({**t, "errors": errors, "wer": errors / words})
    scored.sort(key=lambda t: (-t["wer"], -t["errors"]))
    for t in scored[:n]:
        t["segments"] = align_words(t["ref"], t["pred"])
        t["audio"] = audio_uri(t["audio_filepath"], max_audio_s) if t.get("audio_filepath") else None
        t["name"] = Path(t.get("audio_filepath", str(t["index"]))).name
    return [t for t in scored[:n] if t["errors"] > 0]


def disagreement(ref: list, pred: list, step: float = 0.01) -> float:
    """Share of the clip's labelled time (either side) on which reference and predicted segments differ,
    on a ``step``-second grid: the order of the report's segment figures, most wrong first."""
    end = max([float(s[1]) for s in [*ref, *pred]], default=0.0)
    if end <= 0:
        return 0.0
    t = (np.arange(int(np.ceil(end / step))) + 0.5) * step

    def labels(segs: list) -> np.ndarray:
        out = np.full(len(t), "", dtype=object)
        for start, stop, label in segs:
            out[(t >= float(start)) & (t < float(stop))] = str(label)
        return out

    r, p = labels(ref), labels(pred)
    labelled = (r != "") | (p != "")
    return float((r != p)[labelled].mean()) if labelled.any() else 0.0


def segment_clips(rows: list[dict], n: int, max_audio_s: float) -> list[dict]:
    """test_segments.jsonl (frames task): the ``n`` clips whose predicted segments disagree most with the
    reference, each drawn over its spectrogram (clips whose audio cannot be read are left out)."""
    names = sorted({str(s[2]) for r in rows for s in [*r["reference"], *r["predicted"]]}, key=natural_key)
    ranked = sorted(rows, key=lambda r: -disagreement(r["reference"], r["predicted"]))
    out = []
    for r in ranked:
        audio = read_audio(r["audio_filepath"], max_audio_s) if r.get("audio_filepath") else None
        if audio is None:
            continue
        name = Path(r["audio_filepath"]).name
        share = disagreement(r["reference"], r["predicted"])
        fig = figures.segments_over_spectrogram(
            *audio,
            r["reference"],
            r["predicted"],
            f"{name}: {100 * share:.0f} % of labelled time differs",
            names,
        )
        out.append(
            {"name": name, "image": figure_uri(fig), "audio": audio_uri(r["audio_filepath"], max_audio_s)}
        )
        if len(out) == n:
            break
    return out


def l2_path(rows: list[dict]):
    """probe=lbfgs: val accuracy along the L2 grid (the chosen value is the best one)."""
    if not rows or "val/acc" not in rows[0]:
        return None
    return figures.metric_vs_param(
        [r["l2"] for r in rows], [float(r["val/acc"]) for r in rows], "L2", "val/acc"
    )


def metric_rows(metrics: dict) -> list[tuple[str, float, tuple[float, float] | None]]:
    """(name, value, 95 % interval over test clips or None): each ``_ci95_`` pair joins its metric's row."""
    return [
        (k, v, (metrics[f"{k}_ci95_low"], metrics[f"{k}_ci95_high"]) if f"{k}_ci95_low" in metrics else None)
        for k, v in sorted(metrics.items())
        if "_ci95_" not in k
    ]


def run_context(run: Path, worst: int, max_audio_s: float) -> dict:
    r = load_run(run)
    cfg = r["config"]
    conf = r["confusion"]
    images = {
        "confusion": _uri(confusion_figure(conf["matrix"], conf["labels"])) if conf else None,
        "curves": _uri(figures.learning_curves(r["log"])),
        "weights": _uri(layer_weights_figure(r["weights"])) if r["weights"] else None,
        "layers": _uri(figures.layer_curve(r["layers"], r["weights"])) if r["layers"] else None,
        "wer_length": _uri(figures.wer_by_length(r["transcripts"])) if r["transcripts"] else None,
        "probe": _uri(l2_path(r["probe"])) if r["probe"] else None,
    }
    parts = {k: (cfg.get(k) or {}).get("_target_", "") for k in ("backbone", "featurizer", "head", "task")}
    return {
        "title": f"run report: {run.name}",
        "run_dir": str(run.resolve()),
        "metrics": metric_rows(r["metrics"]),
        "parts": parts,
        "overrides": r["overrides"],
        "config_yaml": yaml.safe_dump(cfg, sort_keys=False) if cfg else "",
        "images": images,
        "probe_rows": r["probe"] or [],
        "per_class": per_class_rows(conf["matrix"], conf["labels"]) if conf else [],
        "weights": r["weights"] or [],
        "layers": r["layers"] or [],
        "clips": worst_clips(r["predictions"], worst, max_audio_s) if r["predictions"] else [],
        "transcripts": worst_transcripts(r["transcripts"], worst, max_audio_s) if r["transcripts"] else [],
        "segment_clips": segment_clips(r["segments"], min(worst, SEGMENT_FIGURES), max_audio_s)
        if r["segments"]
        else [],
        "n_predictions": len(r["predictions"] or r["transcripts"] or r["segments"] or []),
        "interpret": interpret_context(run),  # explain.py / asr_transfer.drift output, when present
    }


def swept_params(trials: list[dict]) -> dict[str, list[str]]:
    """``key=value`` tokens of each trial's overrides, by key (only keys whose value varies)."""
    out: dict[str, list[str]] = {}
    for t in trials:
        for tok in str(t.get("overrides", "")).split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                out.setdefault(k.lstrip("+~"), []).append(v)
    return {k: v for k, v in out.items() if len(v) == len(trials) and len(set(v)) > 1}


def sweep_context(sweep: Path) -> dict:
    s = load_sweep(sweep)
    trials, columns = s["trials"], s["columns"]
    metric = next((c for c in columns if c.startswith(("val/", "test/"))), None)
    plots = []
    if metric:
        done = [t for t in trials if finite_float(t.get(metric)) is not None]
        params = swept_params(done)
        for k, vals in params.items():
            fig = figures.metric_vs_param(vals, [float(t[metric]) for t in done], k, metric)
            plots.append({"param": k, "image": figure_uri(fig)})
    return {
        "title": f"sweep report: {sweep.name}",
        "run_dir": str(sweep.resolve()),
        "columns": [c for c in columns if c != "run_dir"],
        "trials": trials,
        "metric": metric,
        "plots": plots,
    }


def write_report(
    run_dir: str | Path, output: str | Path | None = None, worst: int = 12, max_audio_s: float = 30.0
) -> Path:
    """Render ``run_dir`` (a run, or a sweep holding trials.csv) to ``output`` (default ``<run_dir>/report.html``)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run_dir={run_dir}: no such directory")
    if is_sweep(run):
        html = _env().get_template("sweep.html.j2").render(**sweep_context(run))
    else:
        html = _env().get_template("run.html.j2").render(**run_context(run, worst, max_audio_s))
    out = Path(output) if output else run / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    log.info("report: %s", out)
    return out
