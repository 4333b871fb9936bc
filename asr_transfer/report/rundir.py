"""Read what a run (or sweep) directory holds, tolerating whatever is absent (a report shows what exists)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import yaml

from asr_transfer.utils.errors import MissingPathError
from asr_transfer.utils.jsonl import read_jsonl

log = logging.getLogger(__name__)
RUN_DIR_FIX = "point run_dir at a train.py run directory (outputs/<date>/<time>) or a sweep directory holding trials.csv"


def run_dir_or_exit(argv: list[str]) -> None:
    """``report.py run_dir=<typo>``: one line, and no folder made (Hydra makes ``hydra.run.dir``, which
    conf/report.yaml sets to ``run_dir``, before the job could say it holds no run)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in argv if a.startswith("run_dir=")]
    if not given:
        return  # run_dir=??? : Hydra says it is missing
    run = Path(str(OverridesParser.create().parse_overrides(given[-1:])[0].value()))
    if not run.is_dir():
        sys.exit(MissingPathError("no such folder", f"run_dir={run}", RUN_DIR_FIX).error_line())


def is_sweep(path: Path) -> bool:
    return (path / "trials.csv").is_file() and not (path / "metrics.json").is_file()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def metric_log(run: Path) -> list[dict]:
    """Rows of Lightning's CSVLogger ``metrics.csv`` (newest version when several exist)."""
    files = sorted((run / "csv").glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    return read_csv(files[-1]) if files else []


def layer_weights(run: Path) -> list[float] | None:
    """Softmax weights of a weighted-sum featurizer, read from the best checkpoint (last if none)."""
    import torch

    ckpts = sorted((run / "checkpoints").glob("best*.ckpt")) or sorted((run / "checkpoints").glob("*.ckpt"))
    if not ckpts:
        return None
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)["state_dict"]
    logits = state.get("featurizer.logits")
    return None if logits is None else torch.softmax(logits.float(), 0).tolist()


def load_run(run: Path) -> dict:
    """Everything the report shows about one run; keys are None where the run left nothing."""
    cfg_file = run / ".hydra" / "config.yaml"
    if not cfg_file.is_file() and not (run / "metrics.json").is_file():
        raise MissingPathError(
            "holds neither .hydra/config.yaml nor metrics.json", f"run_dir={run}", RUN_DIR_FIX
        )
    preds = run / "test_predictions.jsonl"
    trans = run / "test_transcripts.jsonl"
    segments = run / "test_segments.jsonl"  # task=frames: each clip's reference and predicted segments
    layers = run / "layers.csv"
    probe = run / "probe.csv"
    return {
        "path": run,
        "config": yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {},
        "overrides": yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        if (run / ".hydra" / "overrides.yaml").is_file()
        else [],
        "metrics": _json(run / "metrics.json") or {},
        "confusion": _json(run / "confusion_matrix.json"),
        "predictions": ref_pred(read_jsonl(preds)) if preds.is_file() else None,
        "transcripts": ref_pred(read_jsonl(trans)) if trans.is_file() else None,
        "segments": read_jsonl(segments) if segments.is_file() else None,
        "log": metric_log(run),
        "layers": read_csv(layers) if layers.is_file() else None,
        "probe": read_csv(probe) if probe.is_file() else None,  # probe=lbfgs: one row per L2
        "weights": layer_weights(run) or _csv_weights(layers),
    }


def ref_pred(rows: list[dict]) -> list[dict]:
    """Rows in the run files' vocabulary, ``ref`` / ``pred``, whatever version wrote them: runs before it
    wrote the reference label as ``label`` (prediction: ``top[0]``) and transcripts' prediction as ``hyp``."""
    out = []
    for r in rows:
        r = dict(r)
        if "ref" not in r and "label" in r:
            r["ref"] = r.pop("label")
        if "pred" not in r:
            r["pred"] = r.pop("hyp") if "hyp" in r else (r.get("top") or [None])[0]
        out.append(r)
    return out


def _csv_weights(layers: Path) -> list[float] | None:
    """The weighted sum's weights a layer-wise probe wrote beside each layer (``weight`` column)."""
    if not layers.is_file():
        return None
    w = [float(r["weight"]) for r in read_csv(layers) if r.get("weight") not in (None, "")]
    return w or None


def load_sweep(sweep: Path) -> dict:
    rows = read_csv(sweep / "trials.csv")
    return {"path": sweep, "trials": rows, "columns": list(rows[0]) if rows else []}
