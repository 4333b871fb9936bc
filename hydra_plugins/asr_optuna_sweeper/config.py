"""Structured configs: ``hydra/sweeper=optuna`` and its samplers (``hydra/sweeper/sampler=tpe|random``)."""

# no `from __future__ import annotations`: Hydra runs this module before it is in sys.modules,
# where dataclasses cannot resolve string annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    _partial_: bool = True  # the sweeper completes it with each trial's seed
    seed: int | None = None  # each trial draws with seed + its trial number: workers never repeat a draw
    n_startup_trials: int = 10  # random trials before TPE models the space
    multivariate: bool = False
    constant_liar: bool = False  # parallel workers: treat running trials as bad, to spread the search


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    _partial_: bool = True
    seed: int | None = None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.asr_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: str = "minimize"  # minimize | maximize
    # null: in memory, lost at exit. sqlite:///<path>.db: one machine. journal:///<path>.log: several
    # processes or nodes on a shared file system. postgresql://...: many nodes (asr_transfer/optuna_storage.py)
    storage: str | None = None
    study_name: str | None = None  # the same name + storage resumes a study (load_if_exists)
    n_trials: int = 20  # trials in the study in all, whatever their state: a rerun tops the study up to it
    n_jobs: int = 1  # trials launched together (a parallel launcher runs them at once)
    pruner: Any = None  # null | median | hyperband | {_target_: optuna.pruners.MedianPruner, ...}
    heartbeat_interval: int = 10  # seconds between heartbeats of running trials
    grace_period: int = 30  # a RUNNING trial without a heartbeat for this long is marked FAIL
    max_failure_rate: float = 0.0  # stop the sweep when more of a batch's jobs crash than this
    params: dict[str, str] | None = None  # the search space: key -> choice(...) | interval(...) | range(...)
    trial: int | None = None  # set per job by the sweeper: the trial this job runs (read by pruning)


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="asr_optuna_sweeper")
cs.store(group="hydra/sweeper/sampler", name="tpe", node=TPESamplerConf, provider="asr_optuna_sweeper")
cs.store(group="hydra/sweeper/sampler", name="random", node=RandomSamplerConf, provider="asr_optuna_sweeper")
