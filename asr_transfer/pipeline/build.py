"""Build the run's objects from a composed config: one ``instantiate`` per swappable part."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from asr_transfer.backbones.base import Backbone
from asr_transfer.backbones.card import CardBackbone, card_key, card_path, make_card

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


def build_datamodule(cfg: DictConfig, backbone: Backbone, **overrides):
    # Shorter clips are zero-padded to the backbone's receptive field (400 samples: wav2vec2's CNN).
    overrides.setdefault("min_samples", getattr(backbone, "min_samples", 400))
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
        _convert_="all",
        **data_kwargs,
    )
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.get("compile"):
        task.head = torch.compile(task.head)
    return task


def attach_cache(cfg: DictConfig, cache_mode: str, datamodule, task) -> dict[str, bool]:
    """Use the on-disk feature cache when nothing upstream of the head trains."""
    if cache_mode == "off" or not task.backbone.fully_frozen:
        return {}
    from asr_transfer.data.cache import FeatureCache
    from asr_transfer.data.cached_dataset import CachedFeatureDataset

    device = cache_device(cfg.trainer)
    cache = FeatureCache(datamodule.cache_dir, dtype=datamodule.cache_dtype, device=device)
    if isinstance(task.backbone, CardBackbone):
        if cache.all_cached(datamodule, task):
            log.info(
                "backbone %s: weights not loaded while every clip's features are cached",
                task.backbone.identity(),
            )
        else:
            log.info("feature cache: some clips are not cached yet; loading the backbone")
            task.backbone = build_backbone(cfg)[0]
    cache.attach(datamodule, task)
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


def cache_device(trainer_cfg) -> torch.device:
    """The device a cache miss is computed on: this process's GPU when the Trainer will use one.

    The cache is built before ``Trainer.fit`` moves the model, so without this a GPU run would
    encode its whole corpus on the CPU. ``LOCAL_RANK`` is set by torchrun/SLURM/Lightning's
    launcher; a ``devices`` list (``[2, 3]``) names the GPUs by index.
    """
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator not in ("auto", "gpu", "cuda") or not torch.cuda.is_available():
        return torch.device("cpu")
    rank = int(os.environ.get("LOCAL_RANK", 0))
    devices = trainer_cfg.get("devices", "auto")
    if isinstance(devices, str) and "," in devices:
        devices = [int(d) for d in devices.split(",") if d.strip()]
    if OmegaConf.is_list(devices) or isinstance(devices, list | tuple):
        return torch.device("cuda", int(list(devices)[rank % len(devices)]))
    return torch.device("cuda", rank)


def write_json(path: str | Path, data: dict) -> None:
    """Atomic JSON write: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def flat_metrics(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if torch.is_tensor(v) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, int | float):
            out[k] = float(v)
    return out


def output_dir(cfg: DictConfig) -> Path:
    try:
        return Path(cfg.paths.output_dir)
    except Exception:  # noqa: BLE001 - ${hydra:...} outside a Hydra app
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
