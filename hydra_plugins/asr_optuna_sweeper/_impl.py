"""The sweep loop: ask, launch, tell, until the study holds ``n_trials`` trials.

- The study is created or loaded by (storage, study_name), so a rerun continues it and several
  workers (processes, nodes, submitit jobs) share it; Optuna's storage numbers the trials.
- ``n_trials`` counts every trial in the study (complete, pruned, failed, running): a rerun after a
  kill tops the study up to it, and workers stop together. Counting and asking happen under a lock
  next to a SQLite/journal file, so they stop at exactly ``n_trials``.
- A trial's run dir is ``<sweep dir>/<trial number>`` (``hydra.sweep.subdir``): unique across workers
  and reruns. The job learns its trial from ``hydra.sweeper.trial`` (asr_transfer/pruning.py).
- While jobs run, this process beats for their trials; a trial whose sweeper died stops beating and
  ``fail_stale_trials`` marks it FAIL (here, on the next round or rerun) after ``grace_period``.
- ``<run dir>/optuna_trial.json`` mirrors the trial's state for the trial table (asr_transfer/sweeps.py).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from asr_transfer.optuna_storage import Heartbeat, ask_lock, make_pruner, open_storage
from asr_transfer.sweeps import TRIAL_STATE_FILE

from ._space import parse_space, trial_overrides

log = logging.getLogger(__name__)

STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def _flat(params: Any, prefix: str = "") -> dict[str, str]:
    """``hydra.sweeper.params``: YAML writes ``optimizer.lr: ...``, the command line nests the same key."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


class OptunaSweeperImpl(Sweeper):
    def __init__(
        self,
        sampler: functools.partial,  # Hydra builds the partial of hydra.sweeper.sampler
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        pruner: Any,
        heartbeat_interval: int,
        grace_period: int,
        max_failure_rate: float,
        params: Any,
        trial: int | None = None,  # a job's own setting; the sweeper sets it per job
    ) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: use a value in [0, 1]")
        if n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_jobs={n_jobs}: use 1 or more")
        self.sampler, self.direction, self.storage_url = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.pruner, self.max_failure_rate = pruner, max_failure_rate
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.params = _flat(OmegaConf.to_container(params) if isinstance(params, DictConfig) else params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def _sampler(self, number: int | None) -> optuna.samplers.BaseSampler:
        # seed + trial number: reproducible per trial, and two workers never draw the same startup trial
        seed = self.sampler.keywords.get("seed")
        if seed is None or number is None:
            return self.sampler()
        return self.sampler(seed=seed + number)

    def _record(self, number: int, state: TrialState, overrides: list[str] | None = None) -> None:
        """Write (or update) ``<run dir>/optuna_trial.json``; a trial of another sweep dir is skipped."""
        path = self.sweep_dir / str(number) / TRIAL_STATE_FILE
        if overrides is None and not path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = json.loads(path.read_text()) if path.is_file() else {}
        record.update(number=number, state=STATES[state], study=self.study_name)
        if overrides is not None:
            record["overrides"] = overrides  # what the job runs: the table lists it even if it never starts
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(path)

    def _fail_stale(self, study: optuna.Study) -> None:
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        for number in running:
            if trials[number].state == TrialState.FAIL:
                log.warning(
                    f"trial {number} was RUNNING without a heartbeat for over {self.grace_period} s "
                    "(its sweeper was killed): marked failed"
                )
                self._record(number, TrialState.FAIL)

    def _tell(
        self, study: optuna.Study, trials: Sequence[optuna.Trial], returns: Sequence[JobReturn]
    ) -> None:
        failures = []
        for trial, ret in zip(trials, returns, strict=True):
            state = study.get_trials(deepcopy=False)[trial.number].state
            if state.is_finished():  # pruned by its job, through the storage
                pass
            elif ret.status != JobStatus.COMPLETED:
                log.warning(f"trial {trial.number} failed: {ret._return_value!r}")
                study.tell(trial, state=TrialState.FAIL)
                failures.append(ret)
            elif not isinstance(ret.return_value, int | float) or not math.isfinite(ret.return_value):
                log.warning(f"trial {trial.number} returned {ret.return_value!r}, not a finite number")
                study.tell(trial, state=TrialState.FAIL)
                failures.append(ret)
            else:
                study.tell(trial, float(ret.return_value))
            self._record(trial.number, study.get_trials(deepcopy=False)[trial.number].state)
        if failures and len(failures) / len(returns) > self.max_failure_rate:
            log.error(
                f"{len(failures)} of {len(returns)} trials failed (hydra.sweeper.max_failure_rate="
                f"{self.max_failure_rate})"
            )
            failures[0].return_value  # noqa: B018 - re-raises the job's exception with its traceback
            raise RuntimeError(f"trial returned {failures[0]._return_value!r}, not a finite number")

    def sweep(self, arguments: list[str]) -> None:
        space, fixed = parse_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        storage = open_storage(self.storage_url, self.heartbeat_interval, self.grace_period)
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=self._sampler(None),
            pruner=make_pruner(self.pruner),
            direction=self.direction,
            load_if_exists=True,
        )
        self.study_name = study.study_name
        log.info(f"Study name: {study.study_name}")
        log.info(f"Storage: {self.storage_url}")
        log.info(f"Sampler: {type(study.sampler).__name__}; pruner: {type(study.pruner).__name__}")
        log.info(f"Directions: {[d.name.lower() for d in study.directions]}")
        if study.trials:
            log.info(f"resuming: the study holds {len(study.trials)} of {self.n_trials} trials")
        while True:
            self._fail_stale(study)
            with ask_lock(self.storage_url), warnings.catch_warnings():
                # Optuna warns that heartbeats are meant for Study.optimize; this loop beats itself
                warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
                left = self.n_trials - len(study.get_trials(deepcopy=False))
                trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            if not trials:
                break
            with Heartbeat(storage, [t._trial_id for t in trials]):  # from now on, a kill is detectable
                overrides = []
                for trial in trials:
                    study.sampler = self._sampler(trial.number)
                    number = trial.number
                    job = trial_overrides(trial, space, fixed)
                    self._record(number, TrialState.RUNNING, overrides=job)
                    overrides.append([*job, f"hydra.sweep.subdir={number}", f"hydra.sweeper.trial={number}"])
                returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            self._tell(study, trials, returns)
        self._fail_stale(study)
        self._write_results(study)

    def _write_results(self, study: optuna.Study) -> None:
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[STATES[t.state]] = counts.get(STATES[t.state], 0) + 1
        log.info(f"study {study.study_name}: {len(study.trials)} trials, {counts}")
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "trials": counts}
        if counts.get("complete"):
            best = study.best_trial
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
            log.info(f"Best parameters: {best.params}")
            log.info(f"Best value: {best.value}")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
