"""Build the run's objects from a composed config: one ``instantiate`` per swappable part."""

from __future__ import annotations

import logging

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.backbones.base import Backbone
from asr_transfer.data.augmented import AugmentedCopies
from asr_transfer.features import FeaturesStage
from asr_transfer.features.stage import not_cacheable_reason, stored_splits
from asr_transfer.pipeline.augment import build_augment
from asr_transfer.tasks.base import pools_first
from asr_transfer.utils.devices import cache_device

log = logging.getLogger(__name__)


def build_backbone(cfg: DictConfig) -> Backbone:
    """The real backbone (weights loaded). ``features_stage(...).backbone`` returns a weightless
    card instead when its features are stored."""
    bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    # _convert_="all": list-valued config_overrides reach the model config as lists, not ListConfig
    # (transformers validates config fields strictly).
    # Seeded with the run's seed inside fork_rng: a random-init backbone (pretrained=false, whose frozen
    # weights checkpoints do not store) comes out the same in train, eval and predict, and whatever
    # loading draws (transformers initialises weights a checkpoint lacks) does not shift the stream the
    # head and dropout draw from, so a run that skips the backbone (a card) reproduces one that loaded it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.get("seed", 0)))
        return instantiate(bcfg, _convert_="all")


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


def features_stage(cfg: DictConfig) -> FeaturesStage | None:
    """The features stage when this run stores features (``features.mode`` not off, and ``cacheable``)."""
    if not cfg.get("features"):
        return None
    stage = instantiate(cfg.features)
    if stage.mode == "off":
        return None
    copies = stage.augmented_copies
    if copies and not (cfg.get("augment") or {}).get("waveform"):
        log.warning(
            "features.augmented_copies=%d does nothing without waveform augmentation (augment=noise|speed|reverb|gain)",
            copies,
        )
    reason = not_cacheable_reason(cfg.backbone)
    if reason is not None:
        ignored = (
            f"; features.augmented_copies={copies} ignored: training augments on the fly" if copies else ""
        )
        log.info("features stage off: %s%s", reason, ignored)
        return None
    return stage


def trains_from_audio(cfg: DictConfig, features: FeaturesStage, train: bool = True) -> bool:
    """A stored run whose training split still reads audio (waveform augmentation without stored
    augmented copies): it needs the real backbone, not its card."""
    return train and "train" not in stored_splits(["train"], cfg.get("augment"), features.augmented_copies)


def feature_request(cfg: DictConfig, backbone) -> tuple[list[int], bool]:
    """(the layers the featurizer reads, pooled?) — what the stage stores. Pooled follows the task's
    rule (``pools_first``: a pooling head, a linear featurizer, no SpecAugment); the featurizer is
    built only to ask it (outside the run's random stream)."""
    with torch.random.fork_rng(devices=[]):
        featurizer = instantiate(cfg.featurizer, _convert_="all")(
            num_layers=backbone.num_layers, hidden_size=backbone.hidden_size
        )
    head_pools = bool(getattr(get_class(cfg.head._target_), "pools_first", False))
    spec_augment = (cfg.get("augment") or {}).get("specaugment")
    pooled = pools_first(head_pools, featurizer, spec_augment)
    if head_pools and spec_augment:
        log.info("specaugment with a pooling head: the features stage stores frames, not pooled vectors")
    return featurizer.layers, pooled


def build_data(cfg: DictConfig, stage: str = "fit", **overrides):
    """(backbone or its card, audio datamodule set up, features stage or None)."""
    features = features_stage(cfg)
    if features is not None and not trains_from_audio(cfg, features, overrides.get("train", True)):
        bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
        backbone = features.backbone(bcfg, lambda: build_backbone(cfg))
    else:
        backbone = build_backbone(cfg)
    datamodule = build_datamodule(cfg, backbone, **overrides)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return backbone, datamodule, features


def feature_sources(cfg: DictConfig, features: FeaturesStage, audio, train: bool = True) -> dict:
    """What the features stage stores for this run (``stored_splits`` says which splits): each split's
    audio dataset, and the training split as its augmented copies when ``features.augmented_copies``
    are stored under waveform augmentation."""
    augment_cfg = cfg.get("augment") if train else None
    stored = stored_splits(audio.datasets, augment_cfg, features.augmented_copies)
    sources = {s: audio.datasets[s] for s in stored}
    if train and "train" in sources and audio.augment is not None:
        copies = features.augmented_copies
        sources["train"] = AugmentedCopies(audio.datasets["train"], audio.augment, audio.seed, copies)
    return sources


def store_features(cfg: DictConfig, features: FeaturesStage, backbone, audio, **overrides):
    """Run the features stage over ``audio``'s splits: (backbone, datamodule of stored features,
    FeatureSet). The backbone is the weightless card, unless training reads audio (waveform
    augmentation): then training runs the real backbone every step, and val/test read stored features.
    With ``features.augmented_copies`` the training split is stored as that many augmented copies."""
    layers, pooled = feature_request(cfg, backbone)
    bcfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    sources = feature_sources(cfg, features, audio, overrides.get("train", True))
    stored = list(sources)
    copies = isinstance(sources.get("train"), AugmentedCopies)
    result = features.run(
        sources,
        backbone,
        layers,
        pooled,
        build=lambda: build_backbone(cfg),
        device=cache_device(cfg.trainer),
        backbone_cfg=bcfg,
    )
    datasets = {s: result.datasets.get(s, ds) for s, ds in audio.datasets.items()}
    run_backbone = result.backbone
    if len(stored) < len(audio.datasets):  # training needs the real backbone's weights
        run_backbone = backbone
        log.info(
            "waveform augmentation (%s): training reads audio through the backbone every step; "
            "%s read stored features (never augmented)",
            ", ".join(audio.augment.names),
            "/".join(stored) or "no other split",
        )
    if copies:
        overrides["augment"] = None  # the copies are augmented already: training reads them as stored
        log.info(
            "waveform augmentation (%s): training reads %d stored augmented copies of each of its %d clips "
            "(%d items an epoch), encoded once; val/test read stored features (never augmented)",
            ", ".join(audio.augment.names),
            features.augmented_copies,
            len(audio.datasets["train"]),
            len(datasets["train"]),
        )
    overrides.setdefault("labels", audio.labels)
    datamodule = build_datamodule(cfg, run_backbone, features=datasets, **overrides)
    datamodule.setup("fit")
    return run_backbone, datamodule, result
