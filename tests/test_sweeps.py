"""Sweeps: the ranked trials.csv, an Optuna search through train.py -m, a submitit_local multirun."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from asr_transfer.sweeps import TRIAL_STATE_FILE, collect_trials, write_trials
from tests.conftest import TINY_WHISPER, run_python, tone_overrides


def _job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> Path:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_trials_ranked_best_first_failed_last_only_varying_overrides(tmp_path):
    common = ["data.corpus.root=/x", "experiment=fsdd_probe"]
    _job(tmp_path, 0, [*common, "optimizer.lr=0.1"], {"val/acc": 0.5, "test/acc": 0.4})
    _job(tmp_path, 1, [*common, "optimizer.lr=0.01"], {"val/acc": 0.9, "test/acc": 0.8})
    _job(tmp_path, 2, [*common, "optimizer.lr=1.0"], None)  # crashed: no metrics.json
    _job(tmp_path, 10, [*common, "optimizer.lr=0.001"], {"val/acc": 0.7, "test/acc": 0.75, "epochs": 20.0})
    assert "test/acc_ci95_low" not in collect_trials(tmp_path, "val/acc")[0]  # no run wrote an interval
    ci = {"test/acc_ci95_low": 0.6, "test/acc_ci95_high": 0.95}
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"val/acc": 0.9, "test/acc": 0.8, **ci}))
    rows = collect_trials(tmp_path, "val/acc")
    assert [r["trial"] for r in rows] == [1, 10, 0, 2]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["state"] for r in rows] == ["complete", "complete", "complete", "failed"]
    assert [r["epochs"] for r in rows] == ["", 20, "", ""]
    assert rows[0]["overrides"] == "optimizer.lr=0.01"  # what all trials share is left out
    assert rows[0]["test/acc"] == 0.8 and rows[-1]["val/acc"] == ""
    path = write_trials(rows, tmp_path / "trials.csv")
    table = list(csv.DictReader(path.open()))
    assert list(table[0]) == [
        "rank",
        "trial",
        "state",
        "epochs",
        "val/acc",
        "test/acc",
        "test/acc_ci95_low",
        "test/acc_ci95_high",
        "overrides",
        "run_dir",
    ]
    assert table[0]["test/acc_ci95_low"] == "0.6" and table[1]["test/acc_ci95_low"] == ""
    assert float(table[0]["val/acc"]) == 0.9 and table[0]["run_dir"] == str((tmp_path / "1").resolve())
    assert not list(tmp_path.glob(".trials.csv.*"))  # the temporary file was renamed, not left behind
    # a metric to minimise ranks the other way
    assert [r["trial"] for r in collect_trials(tmp_path, "test/acc", mode="min")][:3] == [0, 10, 1]


def test_the_optuna_sweepers_records_give_pruned_and_killed_trials_their_state(tmp_path):
    common = ["data.corpus.root=/x"]
    _job(tmp_path, 0, [*common, "optimizer.lr=0.1"], {"val/acc": 0.5, "epochs": 8.0})
    _job(tmp_path, 1, [*common, "optimizer.lr=1e-6"], {"val/acc": 0.9, "epochs": 2.0})
    (tmp_path / "1" / TRIAL_STATE_FILE).write_text(json.dumps({"number": 1, "state": "pruned"}))
    killed = tmp_path / "2"  # asked, then the sweeper was killed before Hydra made the job's .hydra/
    killed.mkdir()
    (killed / TRIAL_STATE_FILE).write_text(
        json.dumps({"number": 2, "state": "failed", "overrides": [*common, "optimizer.lr=0.01"]})
    )
    rows = collect_trials(tmp_path, "val/acc")
    # a pruned trial's metric is from fewer epochs: it ranks after every complete one
    assert [(r["trial"], r["state"], r["epochs"]) for r in rows] == [
        (0, "complete", 8),
        (1, "pruned", 2),
        (2, "failed", ""),
    ]
    assert rows[2]["overrides"] == "optimizer.lr=0.01" and rows[2]["val/acc"] == ""


def _train_cli(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = run_python("train.py", *args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _check_table(sweep: Path, n: int) -> list[dict]:
    rows = list(csv.DictReader((sweep / "trials.csv").open()))
    assert len(rows) == n
    for r in rows:  # each row is its run directory's metrics.json
        metrics = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert float(r["val/acc"]) == pytest.approx(metrics["val/acc"])
        assert float(r["test/acc"]) == pytest.approx(metrics["test/acc"])
    values = [float(r["val/acc"]) for r in rows]
    assert values == sorted(values, reverse=True)
    return rows


def _quiet(corpus, tmp_path) -> list[str]:
    return [*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER, "trainer.max_epochs=2"]


@pytest.mark.slow  # two trials in a fresh interpreter: ~40 s of CPU
def test_optuna_sweep_writes_ranked_trials_and_reuses_feature_cache(tmp_path, tone_corpus):
    sweep = tmp_path / "sweep"
    proc = _train_cli(
        [
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={sweep}",
            *_quiet(tone_corpus, tmp_path),
        ]
    )
    out = proc.stdout + proc.stderr
    assert "Directions: ['maximize']" in out  # follows optimized_mode=max for val/acc
    rows = _check_table(sweep, 2)
    assert "best trial" in out and rows[0]["run_dir"] in out
    assert {r["trial"] for r in rows} == {"0", "1"}
    assert all("optimizer.lr=" in r["overrides"] and "head=" in r["overrides"] for r in rows)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(float(rows[0]["val/acc"]))
    # the frozen backbone's features are computed by the first trial and read by the second
    first, second = (sweep / "0" / "train.log").read_text(), (sweep / "1" / "train.log").read_text()
    assert "features: rank 0/1 encoded 0 clips" not in first and "features: rank 0/1 encoded" in first
    assert "features: rank 0/1 encoded 0 clips" in second


@pytest.mark.slow  # one trial of the real pipeline in a fresh interpreter: ~30 s of CPU
def test_a_pruned_trial_stops_early_and_the_table_says_so(tmp_path, tone_corpus):
    sweep = tmp_path / "sweep"
    proc = _train_cli(
        [
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=1",
            # val/acc is at most 1: this pruner stops every trial after its first epoch
            "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1.1}",
            f"hydra.sweep.dir={sweep}",
            *_quiet(tone_corpus, tmp_path),
            "trainer.max_epochs=3",
        ]
    )
    (row,) = list(csv.DictReader((sweep / "trials.csv").open()))
    assert (row["trial"], row["state"], row["epochs"]) == ("0", "pruned", "1")
    assert "trial 0 pruned after 1 epochs" in proc.stdout + proc.stderr
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{sweep / 'study.db'}")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]
    assert trial.intermediate_values[0] == pytest.approx(float(row["val/acc"]))


@pytest.mark.slow  # submitit starts one interpreter per job: ~60 s of CPU
def test_submitit_local_launcher_runs_a_two_trial_sweep(tmp_path, tone_corpus):
    sweep = tmp_path / "sweep"
    _train_cli(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=20",
            "probe=none",  # a learning-rate sweep is minibatch training
            "optimizer.lr=0.01,0.05",
            f"hydra.sweep.dir={sweep}",
            *_quiet(tone_corpus, tmp_path),
        ]
    )
    rows = _check_table(sweep, 2)
    assert sorted(r["overrides"] for r in rows) == ["optimizer.lr=0.01", "optimizer.lr=0.05"]
    assert list((sweep / ".submitit").glob("*/*_result.pkl")), "jobs ran through submitit"
