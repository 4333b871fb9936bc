"""The features store: a frozen backbone's features, encoded once into shards, before the task is built.

Input: the backbone (or its weightless card), the layers the featurizer reads, pooled or frames
(what the head declares), and the splits' audio datasets. Output: a ``FeatureSet``: one
``FeatureDataset`` per split and the ``CardBackbone`` whose sizes the task is built with. The
store knows no head and no task; which splits it stores, pooled or frames, is the run plan's
decision (``pipeline/plan.py``).

Shards live in ``<dir>/<spec>/`` where ``spec`` hashes what makes a clip's features (backbone
identity and weights, layers stored, pooled, dtype, sample rate, cropping); a clip is keyed by its
file (path, size, mtime), offset and duration, so clips shared by splits, runs and sweep trials
are encoded and stored once. Only clips missing from the index are encoded; under DDP each rank
takes a disjoint share of them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from asr_transfer.features import distributed
from asr_transfer.features.card import CardBackbone, make_card, write_card
from asr_transfer.features.dataset import FeatureDataset
from asr_transfer.features.encode import Clips, encode
from asr_transfer.features.store import DTYPES, ShardIndex, ShardWriter
from asr_transfer.utils.atomic import write_json
from asr_transfer.utils.hashing import file_key, stable_hash

log = logging.getLogger(__name__)
MODES = ("auto", "off", "refresh")
VERSION = 3


def clip_ids(ds) -> list[str]:
    """The store's key of each of a split's clips: its file and stretch, plus the dataset's view of it
    when it has one (``view_ids``: stored augmented copies of one clip are different clips)."""
    ids = [clip_id(e) for e in ds.entries]
    views = getattr(ds, "view_ids", None)
    return ids if views is None else [f"{i}|{v}" for i, v in zip(ids, views(), strict=True)]


def clip_id(entry) -> str:
    return f"{file_key(entry.audio_filepath)}|{entry.offset}|{entry.duration}"


@dataclass
class FeatureSet:
    datasets: dict[str, FeatureDataset]
    backbone: CardBackbone  # what the task is built with: sizes, no weights
    encoded: list[int] = field(default_factory=list)  # clips encoded by each rank in this run
    folder: str = ""


class FeatureStore:
    """Config group ``features``: ``dir`` (shards and cards), ``mode`` (auto: encode what is missing;
    off: never store, the backbone runs every step; refresh: encode everything again), ``dtype``
    (auto: float16 for frames, float32 for pooled vectors), ``shard_mb`` (shard size),
    ``layers`` (used: only the layers the featurizer reads; all: every hidden state, so one pass
    serves every featurizer), encoding batches (``batch_seconds``, ``max_batch_size``) and
    decoding workers for the pass (``num_workers``); ``augmented_copies``: under waveform augmentation,
    0 = training reads audio through the backbone every step, K = store K augmented copies of each
    training clip once and train from the store (a frozen backbone then runs K times per clip, ever)."""

    def __init__(
        self,
        dir: str = ".cache/features",
        mode: str = "auto",
        dtype: str = "auto",
        shard_mb: float = 256,
        layers: str = "used",
        batch_seconds: float = 60.0,
        max_batch_size: int = 64,
        num_workers: int = 0,
        augmented_copies: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"features.mode={mode!r}: use one of {list(MODES)}")
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(f"features.dtype={dtype!r}: use auto or one of {list(DTYPES)}")
        if layers not in ("used", "all"):
            raise ValueError(f"features.layers={layers!r}: use used (the featurizer's layers) or all")
        self.dir, self.mode, self.dtype, self.shard_mb, self.layers = str(dir), mode, dtype, shard_mb, layers
        self.batch_seconds, self.max_batch_size, self.num_workers = batch_seconds, max_batch_size, num_workers
        if int(augmented_copies) != augmented_copies or augmented_copies < 0:
            raise ValueError(
                f"features.augmented_copies={augmented_copies!r}: 0 (augment on the fly) or a count"
            )
        self.augmented_copies = int(augmented_copies)

    def storage_dtype(self, pooled: bool) -> str:
        return self.dtype if self.dtype != "auto" else ("float32" if pooled else "float16")

    def folder(
        self, card: dict, layers: list[int], pooled: bool, datasets: dict
    ) -> tuple[str, dict, list[int]]:
        """(spec folder, spec, stored layers) for these features."""
        stored = list(layers) if self.layers == "used" else list(range(card["num_layers"]))
        audio = {(ds.sample_rate, ds.max_samples, ds.min_samples) for ds in datasets.values()}
        if len(audio) != 1:
            raise ValueError(f"splits decode audio differently {audio}: one sample rate and cropping for all")
        rate, max_samples, min_samples = audio.pop()
        spec = {
            "backbone": card["identity"],
            "weights": card["fingerprint"],
            "layers": stored,
            "pooled": pooled,
            "dtype": self.storage_dtype(pooled),
            "hidden_size": card["hidden_size"],
            "sample_rate": rate,
            "max_samples": max_samples,
            "min_samples": min_samples,
            "version": VERSION,
        }
        return os.path.join(self.dir, stable_hash(spec, 20)), spec, stored

    def estimate(self, backbone, datasets: dict, layers: list[int], pooled: bool) -> dict:
        """What a pass would encode and write, from clip durations and the backbone's geometry alone."""
        card = backbone.card if isinstance(backbone, CardBackbone) else make_card(backbone)
        folder, _, stored = self.folder(card, layers, pooled, datasets)
        index = ShardIndex(folder).refresh()
        missing = _missing(datasets, index)
        size = self.size(backbone, stored, pooled, [e for _, e, _ in missing.values()])
        return {"clips": len(missing), "bytes": size, "stored": len(index.clips)}

    def size(self, backbone, stored: list[int], pooled: bool, entries) -> float:
        """Bytes these clips' features take: one row per clip (pooled) or per frame, of every stored layer."""
        width = len(stored) * backbone.hidden_size * DTYPES[self.storage_dtype(pooled)].itemsize
        frames_per_s = backbone.sample_rate / backbone.downsample_rate
        rows = len(entries) if pooled else sum(e.duration or 0.0 for e in entries) * frames_per_s
        return rows * width

    def run(
        self,
        datasets: dict,
        backbone,
        layers: list[int],
        pooled: bool,
        build: Callable,
        device=None,
        backbone_cfg=None,
    ) -> FeatureSet:
        """Encode what is missing (this rank's share), wait for every rank, read the union."""
        rank, world = distributed.rank_world()
        card = backbone.card if isinstance(backbone, CardBackbone) else make_card(backbone)
        if not datasets:  # nothing to store (a training split only, under waveform augmentation)
            return FeatureSet({}, CardBackbone(card))
        folder, spec, stored = self.folder(card, layers, pooled, datasets)
        if self.mode == "refresh" and rank == 0 and os.path.isdir(folder):
            shutil.rmtree(folder)
        distributed.gather(None)  # refresh done before anyone scans
        if rank == 0 and not os.path.isfile(os.path.join(folder, "spec.json")):
            write_json(os.path.join(folder, "spec.json"), spec)
        index = ShardIndex(folder).refresh()
        index.sweep_stale()
        missing = _missing(datasets, index)
        distributed.gather(None)  # every rank has its list before anyone writes a shard
        todo = sorted(missing.items(), key=lambda kv: (kv[1][1].duration or 0.0, kv[0]))[rank::world]
        if todo:
            prior = self._check_disk(folder, backbone, stored, pooled, [e for _, (_, e, _) in todo])
            real = backbone if not isinstance(backbone, CardBackbone) else build()
            writer = ShardWriter(
                folder,
                self.storage_dtype(pooled),
                len(stored) * card["hidden_size"],
                self.shard_mb * 1e6,
                tag=f"r{rank}",
            )
            clips = Clips([(ds, i) for _, (ds, _, i) in todo])
            # outside the run's random stream: a cold run then trains exactly like a warm one
            with torch.random.fork_rng(devices=[]):
                stats = encode(
                    real,
                    clips,
                    [cid for cid, _ in todo],
                    stored,
                    pooled,
                    writer,
                    self.batch_seconds,
                    self.max_batch_size,
                    device,
                    self.num_workers,
                )
            stats.update(rank=rank, world=world, shards=writer.committed, prior_bytes=prior)
            with open(os.path.join(folder, "passes.jsonl"), "a") as f:
                f.write(json.dumps(stats) + "\n")
            del real
        counts = distributed.gather(len(todo))
        log.info(
            "features: rank %d/%d encoded %d clips (%d stored before, in %s)",
            rank,
            world,
            len(todo),
            len(index.clips),
            folder,
        )
        if world > 1 and rank == 0:
            log.info("features: clips encoded per rank: %s", counts)
        index.refresh()
        if rank == 0 and backbone_cfg is not None:  # a no-op when this backbone's card is stored
            write_card(self.dir, backbone_cfg, card)
        take = [stored.index(layer) for layer in layers]
        out = {s: self._dataset(folder, index, ds, stored, take, pooled, card) for s, ds in datasets.items()}
        return FeatureSet(out, CardBackbone(card), counts, folder)

    def _dataset(self, folder, index, ds, stored, take, pooled, card) -> FeatureDataset:
        entries, where, positions = [], [], []
        for i, (cid, e) in enumerate(zip(clip_ids(ds), ds.entries)):
            if cid not in index.clips:
                raise RuntimeError(
                    f"features: clip {e.audio_filepath} is missing from {folder} after the pass"
                )
            w = index.clips[cid]
            if w is not None:  # None: failed to decode (data.on_bad_audio=skip): left out, as from audio
                entries.append(e), where.append(w), positions.append(i)
        return FeatureDataset(
            folder,
            self.storage_dtype(pooled),
            (len(stored), card["hidden_size"]),
            take,
            pooled,
            entries,
            where,
            positions,
            ds,
        )

    def _check_disk(self, folder, backbone, stored, pooled, entries) -> float:
        """Print the size before the work; refuse clearly when the disk cannot hold it."""
        estimate = self.size(backbone, stored, pooled, entries)
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
        log.info(
            "features: encoding %d clips, about %.1f MB (%s, %s) into %s",
            len(entries),
            estimate / 1e6,
            "pooled" if pooled else "frames",
            self.storage_dtype(pooled),
            folder,
        )
        if estimate > 0.9 * free:
            raise OSError(
                f"features need about {estimate / 1e9:.1f} GB but {folder} has {free / 1e9:.1f} GB free: set "
                "features.dir elsewhere, features.dtype=float16, features.layers=used, or features.mode=off"
            )
        return estimate


def _missing(datasets: dict, index: ShardIndex) -> dict:
    """Clip id -> (dataset, entry, position) for every clip of every split that is not stored (each once)."""
    missing: dict = {}
    for ds in datasets.values():
        for i, (cid, e) in enumerate(zip(clip_ids(ds), ds.entries)):
            if cid not in index.clips and cid not in missing:
                missing[cid] = (ds, e, i)
    return missing
