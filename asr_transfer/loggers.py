"""Weights & Biases for transfer runs: offline without a key or network, sweep groups, and the extras.

``wandb_logger`` (``logger=wandb``) builds Lightning's ``WandbLogger``, falling back to an offline
run in ``<run dir>/wandb/`` when there is no API key or the server is unreachable, and grouping the
runs of one Hydra multirun. ``WandbExtras`` (added by the same config) logs what the metrics alone
do not show: the resolved config, the test confusion matrix (image and per-class table), the
weighted-sum layer weights (per validation epoch and as a final chart) and decoded test examples.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


def _server() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    return url.hostname or "api.wandb.ai", url.port or (443 if url.scheme != "http" else 80)


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why this process cannot log online (no API key, server unreachable), or None when it can."""
    host, port = _server()
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc(os.environ.get("NETRC")).authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return "no W&B API key (WANDB_API_KEY or `wandb login`)"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port} unreachable ({e.__class__.__name__})"
    return None


def sweep_group() -> str | None:
    """In a Hydra multirun: the sweep directory's last two parts (``2026-01-31-12-00-00``), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        return "-".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
    except Exception:  # noqa: BLE001 - no Hydra app (notebooks, compose API): no group
        return None


def wandb_logger(
    save_dir: str,
    project: str = "asr_transfer",
    entity: str | None = None,
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    log_model: bool | str = False,
    offline: bool | None = None,
    **kwargs,
) -> WandbLogger:
    """Lightning's ``WandbLogger``; ``offline=None`` decides from ``WANDB_MODE``, the key and the network."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if offline is None:
        if mode in ("offline", "dryrun"):
            offline = True
        elif mode == "disabled":
            offline = False  # wandb itself turns every call into a no-op
        else:
            reason = offline_reason()
            offline = reason is not None
            if offline:
                _warn_once(f"W&B runs offline: {reason}. The run is kept in {save_dir}/wandb/")
                os.environ["WANDB_MODE"] = "offline"  # DDP ranks and wandb's own service agree
    if offline and log_model:
        _warn_once("logger.wandb.log_model needs online mode: checkpoints stay in the run directory")
        log_model = False
    import wandb

    if wandb.run is not None:  # the previous job of an in-process multirun: close it, or Lightning reuses it
        wandb.finish()
    group = group or sweep_group()
    if name is None and group is not None:
        try:
            from hydra.core.hydra_config import HydraConfig

            name = f"{group}-{HydraConfig.get().job.num}"
        except Exception:  # noqa: BLE001
            name = None
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        entity=entity,
        group=group,
        name=name,
        tags=list(tags or []),
        log_model=log_model,
        offline=bool(offline),
        **kwargs,
    )


@rank_zero_only
def _warn_once(msg: str) -> None:
    log.warning(msg)


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


class WandbExtras(L.Callback):
    """Extras for every ``WandbLogger`` of the trainer (does nothing without one).

    Logged keys: ``layer_weights/<i>`` per validation epoch and ``layer_weights/chart`` at the end
    of fitting (``WeightedSum`` featurizers); ``test/confusion_matrix`` (image) and
    ``test/per_class`` (table) for classification; ``test/examples`` (ref/hyp table) for CTC.
    """

    def __init__(self, max_examples: int = 20) -> None:
        self.max_examples = max_examples
        self._hinted = False

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config = getattr(pl_module, "run_config", None)
        for lg in _wandb_loggers(trainer):
            if config:  # the resolved Hydra config: what eval/predict rebuild from, searchable in W&B
                lg.experiment.config.update(config, allow_val_change=True)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = _layer_weights(pl_module)
        if weights is None or trainer.sanity_checking:
            return
        for lg in _wandb_loggers(trainer):
            lg.log_metrics({f"layer_weights/{i}": w for i, w in enumerate(weights)}, step=trainer.global_step)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = _layer_weights(pl_module)
        if weights is None:
            return
        import wandb

        for lg in _wandb_loggers(trainer):
            table = wandb.Table(columns=["layer", "weight"], data=[[i, w] for i, w in enumerate(weights)])
            lg.experiment.log(
                {"layer_weights/chart": wandb.plot.bar(table, "layer", "weight", title="layer weights")}
            )
            lg.experiment.summary["layer_weights/argmax"] = int(
                max(range(len(weights)), key=weights.__getitem__)
            )

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers:
            return
        import wandb

        from asr_transfer.plots import confusion_figure, per_class_rows

        payload = {}
        confusion = getattr(pl_module, "test_confusion", None)
        labels = getattr(pl_module, "labels", None)
        if confusion is not None and labels is not None:
            matrix = confusion.tolist()
            payload["test/confusion_matrix"] = wandb.Image(confusion_figure(matrix, labels))
            rows = per_class_rows(matrix, labels)
            payload["test/per_class"] = wandb.Table(
                columns=list(rows[0]), data=[list(r.values()) for r in rows]
            )
        examples = getattr(pl_module, "test_rows", None)
        if examples and "ref" in examples[0] and "top" not in examples[0]:  # transcripts, not labels
            shown = examples[: self.max_examples]
            payload["test/examples"] = wandb.Table(
                columns=["index", "ref", "pred"], data=[[r["index"], r["ref"], r["pred"]] for r in shown]
            )
        for lg in loggers:
            if payload:
                lg.experiment.log(payload)
            for key, value in trainer.callback_metrics.items():  # final test metrics in the run summary
                if key.startswith("test/") and value.numel() == 1:
                    lg.experiment.summary[key] = float(value)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._hinted or not trainer.is_global_zero:
            return
        for lg in _wandb_loggers(trainer):
            run = lg._experiment
            if run is not None and run.offline:
                run_dir = Path(run.dir).parent
                log.info("W&B offline run saved in %s; upload it later with: wandb sync %s", run_dir, run_dir)
                self._hinted = True


def _layer_weights(pl_module) -> list[float] | None:
    weights = getattr(getattr(pl_module, "featurizer", None), "weights", None)
    if not callable(weights):
        return None
    return [round(float(w), 6) for w in weights().detach().cpu()]
