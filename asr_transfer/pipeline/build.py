"""Build a run's parts once each, from its plan, in one direction: backbone -> one datamodule -> task.

``build_parts(cfg, plan)`` gives the backbone the task is built with (the real one, or the weightless
card of stored features), the featurizer (built once from that backbone's geometry: it owns which
layers are read and stored) and the one datamodule, which serves audio or stored features per split
(its ``store`` runs the features store inside ``setup``). The caller sets the datamodule up once
(after starting DDP ranks, which share the encoding), then ``build_task``. Nothing is swapped later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.backbones.base import Backbone
from asr_transfer.data.augmented import AugmentedCopies
from asr_transfer.features.card import CardBackbone, make_card
from asr_transfer.featurizers import Featurizer
from asr_transfer.pipeline.plan import RunPlan
from asr_transfer.utils.devices import cache_device

log = logging.getLogger(__name__)


def build_backbone(cfg: DictConfig) -> Backbone:
    """The real backbone (weights loaded).

    Seeded with the run's seed inside fork_rng: a random-init backbone (pretrained=false, whose frozen
    weights checkpoints do not store) comes out the same in train, eval and predict, and whatever
    loading draws (transformers initialises weights a checkpoint lacks) does not shift the stream the
    head and dropout draw from, so a run on the card reproduces one that loaded the backbone.
    """
    # _convert_="all": list-valued config_overrides reach the model config as lists, not ListConfig
    # (transformers validates config fields strictly).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.get("seed", 0)))
        return instantiate(cfg.backbone, _convert_="all")


def task_class(cfg: DictConfig):
    return get_class(cfg.task._target_)


class BackboneSource:
    """The real backbone, loaded at most once and only when something needs its weights."""

    def __init__(self, build: Callable[[], Backbone]) -> None:
        self._build, self._real = build, None

    def get(self) -> Backbone:
        if self._real is None:
            self._real = self._build()
        return self._real

    def release(self) -> None:
        self._real = None  # the task runs on the card: the weights are not needed any more


@dataclass
class Parts:
    """A run's parts before its task: each built once, from ``plan``."""

    plan: RunPlan
    backbone: Backbone  # what the task is built with: the real backbone, or the card of stored features
    featurizer: Featurizer | None  # None: the task reads the backbone's states itself
    datamodule: object  # the data config's LightningDataModule, not set up yet
    stored: StoredSplits | None  # the datamodule's store (what it encoded), None when nothing is stored


def build_parts(cfg: DictConfig, plan: RunPlan, **data_overrides) -> Parts:
    """Backbone (or its card), featurizer, the one datamodule. ``data_overrides``: datamodule arguments
    the entry point fixes (eval: ``run_dir`` and the trained label order)."""
    source = BackboneSource(lambda: build_backbone(cfg))
    if plan.reads_audio:
        backbone = source.get()
    else:  # every split is served from the store: the task needs sizes, not weights
        backbone = CardBackbone(plan.card if plan.card is not None else make_card(source.get()))
    featurizer = None
    if plan.featurizer is not None:
        featurizer = plan.featurizer(num_layers=backbone.num_layers, hidden_size=backbone.hidden_size)
    stored = None
    if plan.store is not None:
        seed = int(cfg.data.get("seed", 0))
        layers = featurizer.layers if featurizer is not None else list(range(backbone.num_layers))
        stored = StoredSplits(
            plan, backbone, source, layers, seed, cache_device(cfg.trainer), plan.backbone_cfg
        )
    datamodule = build_datamodule(
        cfg, plan, backbone.sample_rate, backbone.min_samples, store=stored, **data_overrides
    )
    return Parts(plan, backbone, featurizer, datamodule, stored)


def build_run_task(cfg: DictConfig, parts: Parts, **task_kwargs):
    """The task of a run, around its parts."""
    return build_task(cfg, parts.backbone, parts.featurizer, parts.plan.spec_augment, **task_kwargs)


def build_run(cfg: DictConfig, plan: RunPlan):
    """(parts with the datamodule set up, task): a one-process training run's objects short of fitting,
    for studies and benchmarks that drive the loop themselves (``train`` starts DDP ranks in between)."""
    parts = build_parts(cfg, plan)
    parts.datamodule.prepare_data()
    parts.datamodule.setup("fit")
    return parts, build_run_task(cfg, parts, **task_class(cfg).data_kwargs(parts.datamodule))


def build_datamodule(cfg: DictConfig, plan: RunPlan, sample_rate: int, min_samples: int, **overrides):
    """The datamodule at the backbone's rate and minimum length, reading the task's targets; waveform
    augmentation only where the plan applies it while loading (training audio)."""
    return instantiate(
        cfg.data,
        sample_rate=sample_rate,
        min_samples=min_samples,
        targets=task_class(cfg).run_targets(cfg),
        augment=plan.augment_on_the_fly,
        **overrides,
    )


def build_task(cfg: DictConfig, backbone: Backbone, featurizer: Featurizer, spec_augment=None, **task_kwargs):
    """The LightningModule around a built backbone and featurizer (a run passes its ``Parts`` and its
    plan's ``spec_augment``); sizes (classes, vocabulary) come from ``task_kwargs`` (the task class's
    ``data_kwargs`` or ``checkpoint_kwargs``)."""

    # _convert_="all": plain lists/dicts, so checkpoints load with torch.load(weights_only=True)
    def part(node):
        return instantiate(node, _convert_="all") if node else None

    task = instantiate(
        cfg.task,
        backbone=backbone,
        featurizer=featurizer,
        head=part(cfg.head),
        optimizer=part(cfg.optimizer),
        scheduler=part(cfg.get("scheduler")),
        spec_augment=spec_augment,
        _convert_="all",
        **task_kwargs,
    )
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.get("compile"):
        task.head = torch.compile(task.head)
    return task


def stored_sources(plan: RunPlan, audio: dict, seed: int) -> dict:
    """What the store encodes for this run: each stored split's audio dataset, and the training split
    as its augmented copies when the plan stores ``augmented_copies`` of it."""
    sources = {s: ds for s, ds in audio.items() if s in plan.stored_splits}
    if plan.augmented_copies and "train" in sources:
        sources["train"] = AugmentedCopies(audio["train"], plan.waveform_augment, seed, plan.augmented_copies)
    return sources


class StoredSplits:
    """The datamodule's ``store``: runs the features store once over the splits the plan stores and
    returns their datasets of stored features (``result``: the store's ``FeatureSet``)."""

    def __init__(self, plan: RunPlan, backbone, source: BackboneSource, layers, seed, device, backbone_cfg):
        self.plan, self.backbone, self.source, self.layers = plan, backbone, source, list(layers)
        self.seed, self.device, self.backbone_cfg = seed, device, backbone_cfg
        self.result = None

    def __call__(self, audio: dict) -> dict:
        plan = self.plan
        sources = stored_sources(plan, audio, self.seed)
        self.result = plan.store.run(
            sources,
            self.backbone,
            self.layers,
            plan.pooled,
            build=self.source.get,
            device=self.device,
            backbone_cfg=self.backbone_cfg,
        )
        if isinstance(self.backbone, CardBackbone):
            self.source.release()
        if plan.waveform_augment is not None and "train" not in sources:
            log.info(
                "waveform augmentation (%s): training reads audio through the backbone every step; "
                "%s read stored features (never augmented)",
                ", ".join(plan.waveform_augment.names),
                "/".join(sources) or "no other split",
            )
        if plan.augmented_copies and "train" in sources:
            log.info(
                "waveform augmentation (%s): training reads %d stored augmented copies of each of its %d clips "
                "(%d items an epoch), encoded once; val/test read stored features (never augmented)",
                ", ".join(plan.waveform_augment.names),
                plan.augmented_copies,
                len(audio["train"]),
                len(self.result.datasets["train"]),
            )
        return self.result.datasets

    @property
    def encoded(self) -> list[int] | None:
        return None if self.result is None else self.result.encoded
