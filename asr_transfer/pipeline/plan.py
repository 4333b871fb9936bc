"""Decide once, from the composed config, how a run is put together: ``make_plan(cfg, purpose)``.

Every entry point (``train``, ``evaluate``, ``predict``, ``check_data``, the few-shot and layer-wise
drivers, the studies) asks this one function, then builds each part once from its answer
(``pipeline/build.py``: backbone -> one datamodule -> task). Nothing here loads a model or reads
audio: a plan is cheap enough to make before a sweep starts, to refuse a request it cannot honour.

The rules, each owned here and asked by everyone else:
  * does the backbone ever train? (``backbones.base.trains_reason`` says; then nothing is stored);
  * which splits are stored (training audio that changes every epoch is not);
  * pooled vectors or frames (``pools_first``);
  * the stored card or the real backbone for the task;
  * the exact probe or Lightning's minibatch loop (``fit_with``), and the settings the probe ignores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.backbones.base import trains_reason
from asr_transfer.data.augment import WaveformAugment
from asr_transfer.features import FeatureStore
from asr_transfer.features.card import read_card
from asr_transfer.pipeline.augment import build_augment
from asr_transfer.tasks.spec_augment import SpecAugment

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PURPOSES = ("fit", "test", "predict", "check")
# Settings the exact probe never reads (it has no learning rate, epochs, minibatches or resumable
# state): a user who sets one of them meant minibatch training.
PROBE_IGNORES = (
    "optimizer",
    "scheduler",
    "trainer.max_epochs",
    "trainer.max_steps",
    "data.batch_size",
    "ckpt_path",
)


class PlanError(ValueError):
    """A request the plan cannot honour; the message is one line naming the setting and the fix."""


@dataclass(frozen=True)
class RunPlan:
    """What a run is, decided once. ``purpose``: fit (train.py and the drivers), test (eval.py),
    predict (predict.py, raw audio), check (check_data.py, no model at all)."""

    purpose: str
    backbone_cfg: dict  # the resolved backbone config (keys the store's cards)
    backbone_trains: str | None  # why the backbone trains (its outputs change), None when it never does
    store: FeatureStore | None  # the features store when this run stores features, else None
    not_stored: str  # why features are not stored ("" when they are)
    stored_splits: tuple[str, ...]  # of SPLITS; the datamodule serves these from the store
    pooled: bool  # stored features are per-clip mean vectors (else frames)
    card: dict | None  # the stored backbone card the task is built with (no weights loaded)
    fit_with: str | None  # "probe" (exact fit) | "lightning" (minibatch) | None: no training
    featurizer: Callable | None  # partial(num_layers, hidden_size): built once, from the backbone's geometry
    waveform_augment: WaveformAugment | None  # the training split's chain (fit only), built once
    spec_augment: SpecAugment | None  # feature-level masks for the task, built once
    augmented_copies: int  # stored augmented copies of each training clip (0: augment on the fly)

    @property
    def reads_audio(self) -> bool:
        """Some split reaches the backbone as audio: the task needs the real backbone's weights."""
        return self.store is None or "train" not in self.stored_splits and self.purpose == "fit"

    @property
    def augment_on_the_fly(self) -> WaveformAugment | None:
        """The chain the datamodule applies while loading (None when stored augmented copies replace it)."""
        return None if self.augmented_copies else self.waveform_augment

    def summary(self) -> str:
        """One line for the log: what this run stores and how it trains."""
        stored = (
            f"stores {'/'.join(self.stored_splits) or 'no split'} as {'pooled vectors' if self.pooled else 'frames'}"
            if self.store is not None
            else f"stores nothing ({self.not_stored})"
        )
        if self.reads_audio:
            backbone = "the real backbone"
        else:
            backbone = "the backbone's card" + (
                " (stored)" if self.card is not None else " (the backbone loads to encode)"
            )
        fit = {"probe": "the exact probe", "lightning": "Lightning's loop"}.get(
            self.fit_with or "", "no training"
        )
        return f"plan ({self.purpose}): {stored}; task on {backbone}; {fit}"


def pools_first(head_pools_first: bool, featurizer_linear: bool, spec_augment) -> bool:
    """The one rule for reading only the mean over frames (then stored features are pooled vectors).
    SpecAugment masks frames, and a non-linear featurizer (layer-normed weighted sum) does not commute
    with the mean over frames: either way frames are kept even for a pooling head."""
    return bool(head_pools_first) and bool(featurizer_linear) and not spec_augment


def stored_splits(augmented: bool, copies: int, purpose: str) -> tuple[str, ...]:
    """The splits a storing run stores: all, except training under waveform augmentation (its audio
    changes every epoch) unless ``copies`` augmented copies of it are stored instead. SpecAugment acts
    after the featurizer and stores everything. Eval never augments."""
    if purpose == "fit" and augmented and not copies:
        return ("val", "test")
    return SPLITS


def make_plan(cfg: DictConfig, purpose: str = "fit", overrides: list[str] | None = None) -> RunPlan:
    """The run's plan. ``overrides``: the command line's ``key=value`` items (default: Hydra's, when
    running inside a Hydra app), to tell a setting the user chose from a default the probe ignores."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose={purpose!r}: one of {list(PURPOSES)}")
    bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    trains = trains_reason(bcfg.get("freeze", "all"), bcfg.get("adapter"), bcfg.get("unfreeze"))
    waveform, spec = build_augment(cfg) if purpose in ("fit", "test") else (None, None)
    if purpose == "test":
        waveform = None  # eval tests clean audio, whatever the run trained with
    # a task without a featurizer or head of its own (a model's own decoder) stores frames
    featurizer = instantiate(cfg.featurizer, _convert_="all") if cfg.get("featurizer") else None
    linear = featurizer is not None and get_class(cfg.featurizer._target_).is_linear(**featurizer.keywords)
    head_pools = bool(cfg.get("head")) and get_class(cfg.head._target_).pools_first
    pooled = pools_first(head_pools, linear, spec)
    if head_pools and spec is not None:
        log.info("specaugment with a pooling head: the features store stores frames, not pooled vectors")
    store, not_stored = _store(cfg, purpose, trains, waveform)
    copies = store.augmented_copies if store is not None and waveform is not None else 0
    splits = stored_splits(waveform is not None, copies, purpose) if store is not None else ()
    reads_audio = store is None or (purpose == "fit" and "train" not in splits)
    card = None
    if not reads_audio and store.mode != "refresh":
        card = read_card(store.dir, bcfg)
    fit_with = _fit_with(cfg, purpose, store, splits, pooled)
    plan = RunPlan(
        purpose,
        bcfg,
        trains,
        store,
        not_stored,
        splits,
        pooled,
        card,
        fit_with,
        featurizer,
        waveform,
        spec,
        copies,
    )
    if purpose == "fit":
        refuse_ignored(plan, cfg, hydra_overrides() if overrides is None else overrides)
    return plan


def _store(cfg: DictConfig, purpose: str, trains: str | None, waveform) -> tuple[FeatureStore | None, str]:
    """(the features store, or None and why not)."""
    if purpose in ("predict", "check"):
        return None, f"{purpose} reads audio"
    if not cfg.get("features"):
        return None, "no features config"
    store = instantiate(cfg.features)
    if store.mode == "off":
        return None, "features.mode=off"
    if store.augmented_copies and waveform is None and purpose == "fit":
        log.warning(
            "features.augmented_copies=%d does nothing without waveform augmentation (augment=noise|speed|reverb|gain)",
            store.augmented_copies,
        )
    if trains is not None:
        ignored = (
            f"; features.augmented_copies={store.augmented_copies} ignored: training augments on the fly"
            if store.augmented_copies and waveform is not None
            else ""
        )
        log.info("features stage off: %s%s", trains, ignored)
        return None, trains
    return store, ""


def _fit_with(cfg: DictConfig, purpose: str, store, splits, pooled: bool) -> str | None:
    """The exact probe fits the head alone on stored pooled vectors of a task whose loss it solves
    (``TransferTask.exact_probe``), in one process; anything else trains with Lightning."""
    if purpose != "fit":
        return None
    if not cfg.get("probe"):
        return "lightning"
    task_fits = get_class(cfg.task._target_).exact_probe
    ok = store is not None and "train" in splits and pooled and task_fits and single_process(cfg.trainer)
    if not ok:
        log.info(
            "probe=%s applies to classification, tagging and regression on stored pooled features (frozen backbone, head=linear|mlp) "
            "in one process; this run trains with optimizer=%s instead",
            cfg.probe._target_.rsplit(".", 1)[-1],
            (cfg.get("optimizer") or {}).get("_target_", "?"),
        )
    return "probe" if ok else "lightning"


def single_process(trainer_cfg: Mapping) -> bool:
    """The trainer config runs one process: no DDP strategy, one node, one device (``devices: 1`` or a
    list of one); ``devices: auto`` or ``-1`` may mean several, so it counts as several."""
    devices = trainer_cfg.get("devices", 1)
    if not isinstance(devices, int | str):
        devices = len(devices)
    nodes = int(trainer_cfg.get("num_nodes", 1) or 1)
    return "ddp" not in str(trainer_cfg.get("strategy", "auto")) and nodes == 1 and str(devices) == "1"


def ignored_by_probe(key: str) -> bool:
    """A setting the exact probe never reads (``PROBE_IGNORES``: a group or a key under it)."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in PROBE_IGNORES)


def refuse_ignored(plan: RunPlan, cfg: DictConfig, overrides: list[str]) -> None:
    """Under the exact probe, a setting the user chose that the probe does not use stops the run."""
    if plan.fit_with != "probe":
        return
    chosen = [o for o in overrides if "=" in o and ignored_by_probe(o.split("=", 1)[0])]
    if cfg.get("ckpt_path") and not any(o.lstrip("+~").startswith("ckpt_path=") for o in chosen):
        chosen.append(f"ckpt_path={cfg.ckpt_path}")
    if chosen:
        raise PlanError(
            f"{', '.join(chosen)}: probe=lbfgs (the default for a frozen backbone with a pooling head) fits "
            "exactly, without optimizer, scheduler, epochs, batches or a checkpoint to resume, so this "
            "would be ignored. Fix: add probe=none to train with the optimizer, or drop the setting"
        )


def hydra_overrides() -> list[str]:
    """The running Hydra job's command-line overrides ([] outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def ignored_or_exit(argv: list[str]) -> None:
    """``train.py``'s check before Hydra starts: a setting the exact probe would ignore, or a sweep
    (``-m``) that varies only such settings, stops here in one line, before any job runs. The config is
    composed (each sweep at its first value) only when the command line names such a setting."""
    import sys

    from hydra.errors import HydraException

    from asr_transfer.config import compose
    from asr_transfer.pipeline.data_overrides import parse

    try:
        parsed = [o for o in parse(argv) if not o.key_or_group.startswith("hydra.")]
    except HydraException:
        return  # Hydra names a malformed override itself
    if not any(ignored_by_probe(o.key_or_group) for o in parsed):
        return
    items = [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]
    items += [a for a in argv if a.startswith("~")]  # deletions (~probe): parse() leaves them out
    try:
        make_plan(compose(items), "fit", overrides=items)
    except PlanError as e:
        varied = [o.key_or_group for o in parsed if o.is_sweep_override()]
        if varied and all(ignored_by_probe(k) for k in varied):
            sys.exit(
                f"Error: this sweep varies {', '.join(varied)}, which probe=lbfgs does not use: every trial "
                "would give the same result. Fix: add probe=none to sweep minibatch training"
            )
        sys.exit(f"Error: {e}")
    except Exception:  # noqa: BLE001  (anything else wrong with the config: Hydra says it when the run composes)
        return
