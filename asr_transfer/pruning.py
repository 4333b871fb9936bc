"""Optuna pruning inside a sweep's job: report each validation epoch, stop a hopeless trial.

The job may run in the sweeper's process (basic launcher) or anywhere else (submitit, SLURM), so it
talks to its trial only through the study's storage: it reports ``metric`` per epoch and, when the
pruner says so, stops training and marks the trial PRUNED there; the sweeper then leaves it as is.
Under DDP only rank 0 talks to the storage and broadcasts the decision, so every rank stops together.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import optuna
from hydra.core.hydra_config import HydraConfig

from asr_transfer.optuna_storage import make_pruner, open_storage

log = logging.getLogger(__name__)


class OptunaPruning(L.Callback):
    def __init__(self, storage: str, study_name: str, trial: int, pruner: Any, metric: str) -> None:
        if not storage:
            raise ValueError(
                "hydra.sweeper.pruner needs a storage the jobs can open: set hydra.sweeper.storage "
                "(sqlite:///<dir>/study.db, journal:///<dir>/study.log or a database URL)"
            )
        self.storage_url, self.study_name, self.number = storage, study_name, int(trial)
        self.pruner, self.metric = pruner, metric
        self.trial: optuna.Trial | None = None
        self.pruned_epoch: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.trial is not None:
            return
        storage = open_storage(self.storage_url)
        study = optuna.load_study(
            study_name=self.study_name, storage=storage, pruner=make_pruner(self.pruner)
        )
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self.trial = optuna.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_epoch is not None:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.metric)
            if value is not None:
                self.trial.report(float(value), step=trainer.current_epoch)
                prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_epoch = trainer.current_epoch + 1  # epochs done, as metrics.json counts them
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.trial.study.tell(self.number, state=optuna.trial.TrialState.PRUNED)
                value = float(trainer.callback_metrics[self.metric])
                log.info(
                    f"trial {self.number} pruned after {self.pruned_epoch} epochs ({self.metric}={value:.4f})"
                )


def optuna_pruning(metric: str, sweeper: Any = None) -> OptunaPruning | None:
    """The callback when this job is an Optuna trial with a pruner, else None (``callbacks_for`` drops it).

    ``sweeper``: the job's ``hydra.sweeper`` node (storage, study_name, pruner, and the trial the sweeper
    set for this job); by default read from the running Hydra job, so composing the config elsewhere
    (tests, notebooks, a rerun outside the sweep) builds nothing. conf/hparams_search/optuna.yaml names this.
    """
    if sweeper is None:
        if not HydraConfig.initialized():
            return None
        sweeper = HydraConfig.get().sweeper
    pruner, trial = sweeper.get("pruner"), sweeper.get("trial")
    if pruner is None or trial is None:
        return None
    return OptunaPruning(sweeper.get("storage"), sweeper.get("study_name"), trial, pruner, metric)
