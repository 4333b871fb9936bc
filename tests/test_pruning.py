"""The pruning callback against a real SQLite study: reports per epoch, stops and marks PRUNED."""

from __future__ import annotations

import lightning as L
import optuna
import pytest
import torch
from optuna.trial import TrialState

from asr_transfer.optuna_storage import open_storage
from asr_transfer.pruning import OptunaPruning, optuna_pruning


class Constant(L.LightningModule):
    """Learns nothing; validation reports a fixed val/acc per epoch."""

    def __init__(self, accs: list[float]) -> None:
        super().__init__()
        self.layer, self.accs = torch.nn.Linear(2, 1), accs

    def training_step(self, batch, _):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val/acc", self.accs[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def loader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)


def _fit(tmp_path, accs: list[float], pruner) -> tuple[L.Trainer, OptunaPruning, optuna.trial.FrozenTrial]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    number = study.ask().number
    sweeper = {
        "pruner": pruner,
        "storage": url,
        "study_name": "s",
        "trial": number,
    }  # the job's hydra.sweeper
    callback = optuna_pruning(metric="val/acc", sweeper=sweeper)
    trainer = L.Trainer(
        max_epochs=len(accs),
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Constant(accs)
    trainer.fit(model, train_dataloaders=model.loader(), val_dataloaders=model.loader())
    return trainer, callback, optuna.load_study(study_name="s", storage=url).trials[number]


def test_a_trial_below_the_threshold_is_pruned_after_its_first_epoch(tmp_path):
    pruner = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5}
    trainer, callback, trial = _fit(tmp_path, [0.25, 0.875, 0.875, 0.875], pruner)
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {0: 0.25}
    assert trial.value == 0.25  # Optuna keeps the last reported value
    assert trainer.current_epoch == 1 and callback.pruned_epoch == 1  # metrics.json's "epochs"


@pytest.mark.parametrize("pruner", ["median", "hyperband"])  # the shorthands: nothing to compare with yet
def test_a_trial_that_keeps_up_reports_every_epoch_and_is_left_running(tmp_path, pruner):
    trainer, callback, trial = _fit(tmp_path, [0.625, 0.75, 0.875], pruner)
    assert trial.intermediate_values == {0: 0.625, 1: 0.75, 2: 0.875}
    assert trial.state == TrialState.RUNNING  # the sweeper tells the final value
    assert trainer.current_epoch == 3 and callback.pruned_epoch is None


def test_no_callback_without_a_pruner_or_outside_a_trial_or_a_hydra_job():
    sweeper = {"storage": "sqlite:///x.db", "study_name": "s"}
    assert optuna_pruning("val/acc", {**sweeper, "pruner": None, "trial": 3}) is None
    assert optuna_pruning("val/acc", {**sweeper, "pruner": "median", "trial": None}) is None
    assert optuna_pruning("val/acc") is None  # composed outside a Hydra job: no sweeper to ask
