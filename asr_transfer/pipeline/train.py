"""``train.py``: fit, test the best checkpoint, write ``metrics.json``; returns the optimised metric."""

from __future__ import annotations

import logging
import time

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.features.distributed import start_ranks
from asr_transfer.pipeline.augment import augment_summary
from asr_transfer.pipeline.build import build_parts, build_run_task, task_class
from asr_transfer.pipeline.plan import PlanError, make_plan, single_process
from asr_transfer.pipeline.probe import fit_probe
from asr_transfer.pipeline.results import flat_metrics, output_dir, write_results

log = logging.getLogger(__name__)


def callbacks_for(cfg: DictConfig, has_val: bool) -> list:
    # callbacks=none is an empty node (falsy): to_container rejects the plain {} that `or {}` would give
    cbs = OmegaConf.to_container(cfg.callbacks, resolve=True) if cfg.get("callbacks") else {}
    if not has_val:  # nothing to monitor: keep last.ckpt, drop best-by-val and early stopping
        cbs.pop("early_stopping", None)
        for c in cbs.values():
            if c and c.get("monitor") is not None:
                c["monitor"], c["save_top_k"] = None, 1
    built = (instantiate(c) for c in cbs.values() if c)
    return [cb for cb in built if cb is not None]  # a factory may add nothing (asr_transfer.pruning)


def loggers_for(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]


def train(cfg: DictConfig, overrides: list[str] | None = None) -> float | None:
    """``overrides``: the command line's items when ``cfg`` was composed outside Hydra's app (the
    plan refuses a setting the exact probe would ignore only when the user chose it)."""
    t0 = time.perf_counter()
    run_dir = output_dir(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    plan = make_plan(cfg, "fit", overrides)
    if cfg.get("ckpt_path"):  # a checkpoint that cannot be read stops here, in one line, before any work
        load_checkpoint(cfg.ckpt_path, mmap=True)
    parts = build_parts(cfg, plan)
    datamodule = parts.datamodule
    datamodule.prepare_data()
    has_val = bool(datamodule.manifests().get("val"))
    if single_process(cfg.trainer):  # data faults surface before Lightning's banner (DDP: after its ranks)
        datamodule.setup("fit")
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks_for(cfg, has_val), logger=loggers_for(cfg) or False
    )
    if plan.fit_with == "probe" and trainer.world_size > 1:  # e.g. launched by torchrun with devices=1
        raise PlanError(
            f"probe=lbfgs fits in one process, but this run has {trainer.world_size}. "
            "Fix: run one process, or add probe=none to train with the optimizer under DDP"
        )
    if plan.store is not None:
        start_ranks(trainer)  # under DDP the ranks share the encoding: they must exist first
    datamodule.setup("fit")
    log.info(plan.summary())  # after the data is read: a fault in it stays a one-line error
    task = build_run_task(cfg, parts, **task_class(cfg).data_kwargs(datamodule))
    params = task.parameter_counts()
    log.info(
        "trainable parameters: %d of %d (%.3f %%)",
        params["params/trainable"], params["params/total"], params["params/trainable_pct"],
    )  # fmt: skip
    if plan.fit_with == "probe":  # exact full-batch fit (probe=lbfgs), no epochs
        best, l2 = fit_probe(cfg, trainer, task, datamodule, run_dir)
        metrics = {**flat_metrics(trainer.callback_metrics), "probe/l2": l2, "epochs": 0.0}
        metrics.update(params)
    else:
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        ckpt_cb = trainer.checkpoint_callback
        best = (ckpt_cb.best_model_path or ckpt_cb.last_model_path) if ckpt_cb else None
        metrics = flat_metrics(trainer.callback_metrics)
        metrics.update(params)
        metrics["epochs"] = float(trainer.current_epoch)  # epochs trained: fewer when stopped early or pruned
        if ckpt_cb is not None and ckpt_cb.best_model_score is not None and ckpt_cb.monitor:
            metrics[ckpt_cb.monitor] = float(ckpt_cb.best_model_score)
    encoded = parts.stored.encoded if parts.stored is not None else None
    if cfg.get("test", True) and "test" in datamodule.datasets:
        # weights_only=True: our checkpoints hold tensors and plain containers only (loading runs no code)
        results = trainer.test(
            task, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True
        )
        metrics.update(flat_metrics(results[0] if results else {}))
    if task.nonfinite_total:
        metrics["train/nonfinite_losses"] = float(task.nonfinite_total)
    metrics.update(augment_summary(datamodule, task, trainer.current_epoch))
    if trainer.is_global_zero:
        metrics = write_results(run_dir, metrics, task, cfg.get("stats"))
        summarize(run_dir, metrics, datamodule, task, encoded, best, time.perf_counter() - t0)
    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None


def summarize(run_dir, metrics: dict, datamodule, task, encoded, best: str | None, seconds: float) -> None:
    lines = [f"run dir: {run_dir}", f"best checkpoint: {best}", f"wall time: {seconds:.1f} s"]
    if encoded is not None:
        lines.append(f"stored features: {sum(encoded)} clips encoded in this run (per rank: {encoded})")
    if task.nonfinite_total:
        lines.append(f"non-finite losses skipped: {task.nonfinite_total} (task.max_nonfinite_steps)")
    bad = datamodule.bad_log.summary()
    if bad:
        lines.append(
            f"skipped audio: {sum(bad.values())} files ({dict(bad)}), listed in {run_dir / 'bad_audio.jsonl'}"
        )
    aug = {k: v for k, v in metrics.items() if k.startswith("augment/")}
    if aug:
        lines.append(
            "augmented: " + ", ".join(f"{k.removeprefix('augment/')} {v:g}" for k, v in sorted(aug.items()))
        )
    else:
        lines.append("augmented: nothing (augment=null)")
    lines += [f"{k:>14s}: {number(v)}" for k, v in sorted(metrics.items()) if not k.startswith("augment/")]
    log.info("summary\n  %s", "\n  ".join(lines))


def number(v: float) -> str:
    """A metric for the console: counts (parameters, epochs) as whole numbers, scores to 4 decimals."""
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4f}"
