"""``train.py``: fit, test the best checkpoint, write ``metrics.json``; returns the optimised metric."""

from __future__ import annotations

import logging
import time

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.features.distributed import start_ranks
from asr_transfer.pipeline.augment import augment_summary
from asr_transfer.pipeline.build import build_data, build_task, store_features, task_class
from asr_transfer.pipeline.probe import fit_probe, probe_applies
from asr_transfer.pipeline.run_dir import flat_metrics, output_dir, write_results

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


def train(cfg: DictConfig) -> float | None:
    t0 = time.perf_counter()
    run_dir = output_dir(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # backbone: a weightless card when its features are stored, else the real one
    backbone, datamodule, features = build_data(cfg)
    has_val = "val" in datamodule.datasets
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks_for(cfg, has_val), logger=loggers_for(cfg) or False
    )
    encoded = None
    if features is not None:
        start_ranks(trainer)  # under DDP the ranks share the encoding: they must exist first
        backbone, datamodule, result = store_features(cfg, features, backbone, datamodule)
        encoded = result.encoded
    task = build_task(cfg, backbone, **task_class(cfg).data_kwargs(datamodule))
    params = task.parameter_counts()
    log.info(
        "trainable parameters: %d of %d (%.3f %%)",
        params["params/trainable"], params["params/total"], params["params/trainable_pct"],
    )  # fmt: skip
    if probe_applies(cfg, task, datamodule, trainer):  # exact full-batch fit (probe=lbfgs), no epochs
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
    if cfg.get("test", True) and "test" in datamodule.datasets:
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        metrics.update(flat_metrics(results[0] if results else {}))
    if task.nonfinite_total:
        metrics["train/nonfinite_losses"] = float(task.nonfinite_total)
    metrics.update(augment_summary(datamodule, task, trainer.current_epoch))
    if trainer.is_global_zero:
        write_results(run_dir, metrics, task)
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
    lines += [f"{k:>14s}: {v:.4f}" for k, v in sorted(metrics.items()) if not k.startswith("augment/")]
    log.info("summary\n  %s", "\n  ".join(lines))
