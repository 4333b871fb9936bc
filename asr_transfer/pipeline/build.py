"""Build the run's objects from a composed config: one ``instantiate`` per swappable part."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.backbones.base import Backbone
from asr_transfer.backbones.card import CardBackbone, card_key, card_path, make_card
from asr_transfer.pipeline.augment import build_augment
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.devices import cache_device

log = logging.getLogger(__name__)


def build_backbone(cfg: DictConfig, use_card: bool = False) -> tuple[Backbone, str]:
    """The backbone and its cache mode (``backbone.cache``: auto | off; not a constructor argument).

    ``use_card``: a frozen local backbone seen before comes back as a weightless ``CardBackbone``
    (``backbones/card.py``); ``attach_cache`` loads the real one if any clip is not cached.
    """
    bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    cache = str(bcfg.pop("cache", "auto"))
    if cache not in ("auto", "off"):
        raise ValueError(f"backbone.cache={cache!r}: use auto or off")
    if use_card and cache == "auto":
        card = _read_card(cfg, bcfg)
        if card is not None:
            return CardBackbone(card), cache
    # _convert_="all": list-valued config_overrides reach the model config as lists, not ListConfig
    # (transformers validates config fields strictly).
    # Seeded with the run's seed inside fork_rng: a random-init backbone (pretrained=false, whose frozen
    # weights checkpoints do not store) comes out the same in train, eval and predict, and whatever
    # loading draws (transformers initialises weights a checkpoint lacks) does not shift the stream the
    # head and dropout draw from, so a run that skips the backbone (a card) reproduces one that loaded it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.get("seed", 0)))
        return instantiate(bcfg, _convert_="all"), cache


def build_datamodule(cfg: DictConfig, backbone: Backbone, train: bool = True, **overrides):
    """The datamodule, reading the task's targets at the backbone's rate; shorter clips are zero-padded
    to the backbone's ``min_samples`` (its receptive field). ``train=False`` (eval, predict): no
    waveform augmentation, whatever the run trained with."""
    overrides.setdefault("min_samples", getattr(backbone, "min_samples", 400))
    overrides.setdefault("targets", task_class(cfg).make_targets())
    if train:
        overrides.setdefault("augment", build_augment(cfg)[0])
    return instantiate(cfg.data, sample_rate=backbone.sample_rate, **overrides)


def task_class(cfg: DictConfig):
    return get_class(cfg.task._target_)


def build_task(cfg: DictConfig, backbone: Backbone, **data_kwargs):
    """The LightningModule; sizes (hidden size, layers, classes / vocabulary) come from the parts."""

    # _convert_="all": plain lists/dicts, so checkpoints load with torch.load(weights_only=True)
    def part(node):
        return instantiate(node, _convert_="all") if node else None

    task = instantiate(
        cfg.task,
        backbone=backbone,
        featurizer=part(cfg.featurizer),
        head=part(cfg.head),
        optimizer=part(cfg.optimizer),
        scheduler=part(cfg.get("scheduler")),
        spec_augment=build_augment(cfg)[1],
        _convert_="all",
        **data_kwargs,
    )
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.get("compile"):
        task.head = torch.compile(task.head)
    return task


def cached_splits(cache_mode: str, fully_frozen: bool, waveform_augment: bool, splits) -> list[str]:
    """The one rule for which splits read cached features: none unless the backbone is fully frozen
    (and ``backbone.cache`` is not off); all of them, except training under waveform augmentation
    (its audio changes every epoch, so the backbone runs every step there)."""
    if cache_mode == "off" or not fully_frozen:
        return []
    return [s for s in splits if not (s == "train" and waveform_augment)]


def attach_cache(cfg: DictConfig, cache_mode: str, datamodule, task) -> dict[str, bool]:
    """Use the on-disk feature cache when nothing upstream of the head trains."""
    if cache_mode == "off":
        return {}
    if not task.backbone.fully_frozen:
        log.info("feature cache not used: %s", task.backbone.not_frozen_reason())
        return {}
    augment = getattr(datamodule, "augment", None)
    splits = cached_splits(cache_mode, task.backbone.fully_frozen, augment is not None, datamodule.datasets)
    if not splits:
        return {}
    if augment is not None and "train" in datamodule.datasets:
        log.info(
            "waveform augmentation (%s): feature cache off for training (the backbone runs every step); "
            "val/test cached and clean",
            ", ".join(augment.names),
        )
    if getattr(task, "spec_augment", None) is not None and getattr(task.head, "pools_first", False):
        log.info("specaugment with a pooling head: the feature cache stores frames, not pooled vectors")
    from asr_transfer.data.cache import FeatureCache
    from asr_transfer.data.cached_dataset import CachedFeatureDataset

    device = cache_device(cfg.trainer)
    cache = FeatureCache(datamodule.cache_dir, dtype=datamodule.cache_dtype, device=device)
    if isinstance(task.backbone, CardBackbone):
        if "train" in datamodule.datasets and "train" not in splits:
            log.info("feature cache: training reads audio; loading the backbone")
            task.backbone = build_backbone(cfg)[0]
        elif cache.all_cached(datamodule, task):
            log.info(
                "backbone %s: weights not loaded while every clip's features are cached",
                task.backbone.identity(),
            )
        else:
            log.info("feature cache: some clips are not cached yet; loading the backbone")
            task.backbone = build_backbone(cfg)[0]
    cache.attach(datamodule, task, splits)
    if not isinstance(task.backbone, CardBackbone):
        card = make_card(task.backbone, cache.fingerprint)
        _write_card(cfg, card)
        if all(isinstance(ds, CachedFeatureDataset) for ds in datamodule.datasets.values()):
            # Nothing in this run reads audio any more: train without the weights in memory (or on the
            # GPU), and every DDP rank holds the same (empty) backbone whether it computed or read the cache.
            task.backbone = CardBackbone(card)
    return cache.hits


def _card_file(cfg: DictConfig, bcfg: dict) -> Path | None:
    key = card_key(bcfg)
    return None if key is None else card_path(cfg.data.get("cache_dir", ".cache/features"), key)


def _read_card(cfg: DictConfig, bcfg: dict) -> dict | None:
    path = _card_file(cfg, bcfg)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # a damaged card only costs loading the backbone
        log.warning("ignoring unreadable backbone card %s (%s)", path, e)
        return None


def _write_card(cfg: DictConfig, card: dict) -> None:
    bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    path = _card_file(cfg, bcfg)
    if path is not None and not path.is_file():
        write_json(path, card)
