"""Sweep bookkeeping: a Hydra callback that ranks a multirun's trials into ``<sweep dir>/trials.csv``.

It reads the run-directory contract (``.hydra/overrides.yaml`` and ``metrics.json`` of every job)
rather than in-process return values, so the table is the same whichever launcher ran the jobs
(basic, joblib, submitit on a cluster) and can be rebuilt later with ``python -m asr_transfer.sweeps DIR``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from asr_transfer.utils.atomic import write_csv

log = logging.getLogger(__name__)


TRIAL_STATE_FILE = "optuna_trial.json"  # the Optuna sweeper's record of a trial's state (hydra_plugins/)
_STATE_ORDER = {"complete": 0, "pruned": 1}  # then failed / running: without a final result


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect_trials(sweep_dir: str | Path, metric: str, mode: str = "max") -> list[dict[str, Any]]:
    """One row per job directory of ``sweep_dir``, best first; failed jobs (no metric) last.

    Columns: rank, trial (job number), state, epochs trained, the optimised metric, its test
    counterpart when present (``val/acc`` -> ``test/acc``) with its 95 % interval, the overrides that vary between trials, the
    run directory. The state is the Optuna sweeper's (complete, pruned, failed, running) where it
    left a record, else complete when the job wrote its metric and failed when not. Complete trials
    rank first, then pruned ones (their metric is from fewer epochs), then the rest.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"optimized_mode={mode!r}: use max or min")
    sweep_dir = Path(sweep_dir)
    jobs = []
    for d in sweep_dir.iterdir() if sweep_dir.is_dir() else []:
        overrides_file, record = d / ".hydra" / "overrides.yaml", _read_json(d / TRIAL_STATE_FILE)
        if d.is_dir() and overrides_file.is_file():
            overrides = yaml.safe_load(overrides_file.read_text()) or []
        elif "overrides" in record:  # a trial killed before its job started: the sweeper's record
            overrides = record["overrides"]
        else:
            continue
        jobs.append((d, [str(o) for o in overrides], _read_json(d / "metrics.json"), record))
    if not jobs:
        return []
    # What every trial shares (data paths, the search itself) would only hide what differs.
    shared = set.intersection(*(set(o) for _, o, _, _ in jobs)) if len(jobs) > 1 else set()
    test_key = "test/" + metric.split("/", 1)[1] if metric.startswith("val/") else None
    ci_keys = [f"{test_key}_ci95_low", f"{test_key}_ci95_high"] if test_key else []
    if not any(k in m for _, _, m, _ in jobs for k in ci_keys):
        ci_keys = []  # runs from before intervals (or ~stats): no empty columns
    rows = []
    for d, overrides, metrics, record in jobs:
        value = metrics.get(metric)
        ok = isinstance(value, int | float) and math.isfinite(value)
        state = record.get("state") or ("complete" if ok else "failed")
        epochs = metrics.get("epochs")
        row = {
            "trial": int(d.name) if d.name.isdigit() else d.name,
            "state": state,
            "epochs": int(epochs) if isinstance(epochs, int | float) else "",
            metric: value if ok else "",
            "overrides": " ".join(o for o in overrides if o not in shared),
            "run_dir": str(d.resolve()),
        }
        if test_key:  # with its interval over test clips (asr_transfer/stats.py) where runs wrote one
            for key in (test_key, *ci_keys):
                row[key] = metrics.get(key, "")
        rows.append(row)
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(
        key=lambda r: (
            _STATE_ORDER.get(r["state"], 2),
            r[metric] == "",
            sign * (r[metric] or 0.0),
            str(r["trial"]),
        )
    )
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


def write_trials(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``trials.csv``: rank and trial first, the overrides and run dir last (written atomically)."""
    fields = ["rank", "trial", *[k for k in rows[0] if k not in ("rank", "trial", "overrides", "run_dir")]]
    fields += ["overrides", "run_dir"]
    return write_csv(path, rows, fields)


class TrialTable(Callback):
    """Registered in conf/hydra/default.yaml; runs once, locally, after every job of a multirun."""

    def __init__(self, filename: str = "trials.csv") -> None:
        self.filename = filename

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        metric = config.get("optimized_metric")
        if not metric:
            log.warning("no optimized_metric in the config: not writing %s", self.filename)
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_trials(sweep_dir, metric, str(config.get("optimized_mode") or "max"))
        if not rows:
            log.warning("no finished trials under %s: not writing %s", sweep_dir, self.filename)
            return
        path = write_trials(rows, sweep_dir / self.filename)
        best = rows[0]
        states: dict[str, int] = {}
        for r in rows:
            states[r["state"]] = states.get(r["state"], 0) + 1
        msg = (
            f"{len(rows)} trials ranked by {metric} in {path} ("
            + ", ".join(f"{n} {state}" for state, n in states.items())
            + ")"
            + f"\nbest trial {best['trial']}: {metric}={best[metric]}  {best['overrides']}\n  {best['run_dir']}"
        )
        log.info(msg)


def main(argv: list[str] | None = None) -> None:
    """``python -m asr_transfer.sweeps SWEEP_DIR [METRIC] [max|min]``: (re)write trials.csv by hand."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit(main.__doc__)
    sweep_dir, metric = Path(args[0]), args[1] if len(args) > 1 else "val/acc"
    rows = collect_trials(sweep_dir, metric, args[2] if len(args) > 2 else "max")
    if not rows:
        raise SystemExit(f"{sweep_dir}: no job directories with .hydra/overrides.yaml")
    print(write_trials(rows, sweep_dir / "trials.csv"))


if __name__ == "__main__":
    main()
