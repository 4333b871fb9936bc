"""The repo's Optuna sweeper (hydra_plugins/asr_optuna_sweeper): search space, resume, stale trials,
parallel workers. Jobs are a toy Hydra app (no torch), so each sweep costs one interpreter start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from asr_transfer.optuna_storage import Heartbeat, open_storage
from hydra_plugins.asr_optuna_sweeper._space import format_value, parse_space
from tests.conftest import ROOT

APP = """
import time
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="app")
def main(cfg):
    time.sleep(cfg.sleep)
    return (cfg.x - 0.5) ** 2 + (0.0 if cfg.kind == "a" else 1.0)

if __name__ == "__main__":
    main()
"""
APP_CONF = """
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0.0
kind: a
sleep: 0.0
hydra:
  sweeper:
    study_name: toy
    sampler: {seed: 0, n_startup_trials: 3}
    params: {x: "interval(-2, 2)", kind: "choice(a, b)"}
"""


def test_each_search_space_syntax_and_the_command_line_wins():
    space, fixed = parse_space(
        [
            "optimizer.lr=tag(log, interval(1e-4, 3e-2))",
            "head=choice(linear, mlp)",
            "head.dropout=0.0,0.1,0.3",  # the short form of choice
            "backbone.top_k=range(1,4)",  # stop excluded, as in a grid: 1, 2, 3
            "data.crop=range(0.5,2.0,0.5)",
            "optimizer.momentum=interval(0.8, 0.99)",
            "featurizer.layer_norm=choice(true, false)",
            "head=linear",  # the command line (parsed last) fixes what params searched
            "+trainer.limit_val_batches=2",
            "~logger",
        ]
    )
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 3e-2, log=True),
        "head.dropout": CategoricalDistribution([0.0, 0.1, 0.3]),
        "backbone.top_k": IntDistribution(1, 3, step=1),
        "data.crop": FloatDistribution(0.5, 1.5, step=0.5),
        "optimizer.momentum": FloatDistribution(0.8, 0.99),
        "featurizer.layer_norm": CategoricalDistribution([True, False]),
    }
    assert fixed == ["head=linear", "+trainer.limit_val_batches=2", "~logger"]
    with pytest.raises(ValueError, match=r"glob\(\.\.\.\) is not a search space"):
        parse_space(["head=glob(*)"])


@pytest.mark.parametrize("value", [None, True, False, 3, 1e-5, 0.1, "mlp", "weighted_sum"])
def test_a_sampled_value_reads_back_as_itself(value):
    (override,) = OverridesParser.create().parse_overrides([f"k={format_value(value)}"])
    assert override.value() == value and type(override.value()) is type(value)


def _sweep(tmp: Path, storage: str, n_trials: int, *extra: str, wait: bool = True):
    (tmp / "app.py").write_text(APP)
    (tmp / "app.yaml").write_text(APP_CONF)
    args = [sys.executable, str(tmp / "app.py"), "-m", f"hydra.sweep.dir={tmp / 'sweep'}"]
    args += [f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={n_trials}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.Popen(
        args, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-4000:]
    return out


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="toy", storage=open_storage(storage)).trials


def _job_dirs(sweep: Path) -> dict[int, dict]:
    """trial number -> the job's hydra.yaml, for every run dir a job wrote."""
    return {
        int(d.name): yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())["hydra"]
        for d in sweep.iterdir()
        if (d / ".hydra" / "hydra.yaml").is_file()
    }


def test_a_rerun_tops_the_study_up_to_n_trials_in_run_dirs_named_by_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _sweep(tmp_path, storage, 3)
    first = _trials(storage)
    out = _sweep(tmp_path, storage, 5)  # n_trials counts the whole study: 2 more, not 5
    trials = _trials(storage)
    assert "resuming: the study holds 3 of 5 trials" in out
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in trials[:3]] == [t.params for t in first]  # untouched by the rerun
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["x"] for t in trials}) == 5  # seed + trial number: no draw repeats
    jobs = _job_dirs(tmp_path / "sweep")
    assert sorted(jobs) == [0, 1, 2, 3, 4]
    assert all(h["sweeper"]["trial"] == n and h["job"]["num"] == n for n, h in jobs.items())
    for t in trials:  # each run dir ran its trial's parameters
        overrides = yaml.safe_load(
            (tmp_path / "sweep" / str(t.number) / ".hydra" / "overrides.yaml").read_text()
        )
        assert f"kind={t.params['kind']}" in overrides
        assert float(next(o for o in overrides if o.startswith("x=")).split("=")[1]) == t.params["x"]
        assert t.value == pytest.approx((t.params["x"] - 0.5) ** 2 + (t.params["kind"] == "b"))
    assert "holds 5 of 5 trials" in _sweep(tmp_path, storage, 5)
    assert len(_trials(storage)) == 5  # nothing left to do


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_workers_running_trial_is_failed_and_a_live_ones_is_not(tmp_path, kind):
    storage = (
        f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'study.log'}"
    )
    backend = open_storage(storage, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="toy", storage=backend)
    dead, live = study.ask(), study.ask()
    backend.record_heartbeat(dead._trial_id)  # beat once, then its worker was killed
    time.sleep(2.5)
    with Heartbeat(backend, [live._trial_id]):  # a worker still running its trial
        out = _sweep(
            tmp_path, storage, 4, "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"
        )
    trials = _trials(storage)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING] + [TrialState.COMPLETE] * 2
    assert "trial 0 was RUNNING without a heartbeat" in out and "trial 1 was" not in out


def test_two_workers_share_a_journal_study_without_duplicates(tmp_path):
    storage = f"journal://{tmp_path / 'study.log'}"
    workers = [_sweep(tmp_path, storage, 12, "sleep=0.3", wait=False) for _ in range(2)]
    outs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    trials = _trials(storage)
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    jobs = _job_dirs(tmp_path / "sweep")
    assert sorted(jobs) == list(range(12)) and all(h["sweeper"]["trial"] == n for n, h in jobs.items())
    launched = [[int(x) for x in _launched(out)] for out in outs]
    assert sorted(launched[0] + launched[1]) == list(range(12)) and all(launched), launched


def _launched(out: str) -> list[str]:
    """Trial numbers a worker launched, from the launcher's '#<job num> : <overrides>' lines."""
    return [line.split("#", 1)[1].split(" ", 1)[0] for line in out.splitlines() if "\t#" in line]
