"""On-disk cache of a frozen backbone's features: computed once, read by every later epoch, run and trial.

What is stored: the layers the featurizer reads, either as per-clip means over valid frames
(``pooled``: exact for heads that pool first, since the mean of a weighted layer sum is the
weighted sum of per-layer means) or as frames (attentive pooling, CTC). The key covers
everything that changes the features: the backbone's identity and a hash of its weights, the
layers kept, pooled or not, storage dtype, sample rate, cropping, and every audio file's path,
size and mtime. Files are written to a temporary name and renamed, so a partly written cache is
never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.data.cached_dataset import CachedFeatureDataset
from asr_transfer.heads import masked_mean

log = logging.getLogger(__name__)
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


class FeatureCache:
    """``attach(datamodule, task)`` swaps each split's dataset for cached features.

    Layout: ``<cache_dir>/<spec>/<split>-<clips>.pt``, where ``spec`` hashes what makes a clip's
    features (backbone identity and weights, layers, pooling, dtype, sample rate, cropping) and
    ``clips`` hashes the split's clip list (path, size, mtime, offset, duration). A split that is
    not on disk is assembled from every shard of the same spec and only clips seen nowhere are
    computed: a new speaker split, a label-budget subset or a sweep trial costs no backbone time.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        dtype: str = "float16",
        batch_seconds: float = 60.0,
        max_batch_size: int = 64,
        device: str | torch.device | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"data.cache_dtype={dtype!r}: use one of {list(DTYPES)}")
        self.dir, self.dtype = Path(cache_dir), dtype
        self.batch_seconds, self.max_batch_size = batch_seconds, max_batch_size
        # Where the backbone runs for a miss (the Trainer has not moved it yet): the GPU it will
        # train on, else wherever its weights are. It goes back to its own device afterwards.
        self.device = torch.device(device) if device is not None else None
        self.hits: dict[str, bool] = {}
        self.fingerprint: str | None = None  # the backbone's weight hash, once attach computed it

    def spec(self, backbone, layers: list[int], pooled: bool, dataset) -> str:
        spec = {
            "backbone": backbone.identity(),
            "weights": backbone.fingerprint(),
            "layers": layers,
            "pooled": pooled,
            "dtype": self.dtype,
            "sample_rate": dataset.sample_rate,
            "max_samples": dataset.max_samples,
            "min_samples": getattr(dataset, "min_samples", None),
            "version": 2,
        }
        return _hash(spec)

    @staticmethod
    def clip_ids(dataset) -> list[str]:
        ids = []
        for e in dataset.entries:
            try:
                st = os.stat(e.audio_filepath)
                ids.append(f"{e.audio_filepath}|{st.st_size}|{st.st_mtime_ns}|{e.offset}|{e.duration}")
            except OSError:
                ids.append(f"{e.audio_filepath}|-|-|{e.offset}|{e.duration}")
        return ids

    def key(self, backbone, layers: list[int], pooled: bool, dataset) -> str:
        return f"{self.spec(backbone, layers, pooled, dataset)}/{_hash(self.clip_ids(dataset))}"

    def _split_path(self, split: str, ds, task, memo: dict) -> tuple[Path, list[str]]:
        spec = self.spec(_Memo(task.backbone, memo), task.featurizer.layers_used(), task.pools_first, ds)
        ids = self.clip_ids(ds)
        return self.dir / spec / f"{split}-{_hash(ids)}.pt", ids

    def all_cached(self, datamodule, task) -> bool:
        """Whether every split not yet attached has its cache file (attach would compute nothing)."""
        memo: dict = {}
        return all(
            self._split_path(split, ds, task, memo)[0].is_file()
            for split, ds in datamodule.datasets.items()
            if not isinstance(ds, CachedFeatureDataset)
        )

    def attach(self, datamodule, task, splits: list[str] | None = None) -> None:
        """``splits``: which splits to cache (default all; see ``pipeline.build.cached_splits``)."""
        layers, pooled = task.featurizer.layers_used(), task.pools_first
        memo: dict = {}
        for split, ds in list(datamodule.datasets.items()):
            if isinstance(ds, CachedFeatureDataset) or (splits is not None and split not in splits):
                continue
            t0 = time.perf_counter()
            path, ids = self._split_path(split, ds, task, memo)
            if path.is_file():
                data = _load(path)
                self.hits[split] = True
                log.info("feature cache HIT  %s: %s (%.2f s)", split, path, time.perf_counter() - t0)
            else:
                clips = self._from_shards(path.parent, ids)
                missing = [i for i, c in enumerate(clips) if c is None]
                if missing:
                    computed = self.compute(task.backbone, ds, layers, pooled, split, missing)
                    for i, c in zip(missing, computed):
                        clips[i] = c
                data = _pack(clips, ids, pooled, len(layers), task.backbone.hidden_size, DTYPES[self.dtype])
                self.write(path, data)
                self.hits[split] = not missing
                log.info(
                    "feature cache %s %s: %d clips from earlier shards, %d computed, %.1f s -> %s (%.1f MB)",
                    "HIT " if not missing else "MISS",
                    split,
                    len(ids) - len(missing),
                    len(missing),
                    time.perf_counter() - t0,
                    path,
                    path.stat().st_size / 1e6,
                )
            datamodule.datasets[split] = CachedFeatureDataset(data, ds)
        self.fingerprint = memo.get("fp")

    def _from_shards(self, spec_dir: Path, ids: list[str]) -> list:
        """Per-clip features for ``ids`` found in any shard of this spec (None where absent)."""
        want = {cid: i for i, cid in enumerate(ids)}
        clips: list = [None] * len(ids)
        if not spec_dir.is_dir():
            return clips
        for shard in sorted(spec_dir.glob("*.pt")):
            try:
                data = _load(shard)
            except Exception as e:  # noqa: BLE001 - an unreadable shard is skipped, never trusted
                log.warning("feature cache: ignoring unreadable shard %s (%s)", shard, e)
                continue
            for j, cid in enumerate(data.get("clips", [])):
                i = want.get(cid)
                if i is not None and clips[i] is None:
                    clips[i] = _unpack(data, j)
            if all(c is not None for c in clips):
                break
        return clips

    @torch.inference_mode()
    def compute(
        self, backbone, dataset, layers: list[int], pooled: bool, split: str, indices: list[int]
    ) -> list:
        """Run the backbone over ``dataset[indices]``: per clip (features, frame length) or False (bad audio)."""
        from rich.progress import Progress

        was_training = backbone.training
        home = next(backbone.parameters(), torch.empty(0)).device  # a CardBackbone has none
        device = self.device or home
        backbone.eval().to(device)
        subset = Subset(dataset, indices)
        durations = dataset.durations
        sampler = LengthBatchSampler(
            [durations[i] for i in indices],
            batch_size=self.max_batch_size,
            max_batch_seconds=self.batch_seconds,
            shuffle=False,
        )
        loader = DataLoader(subset, batch_sampler=sampler, collate_fn=_collate_keep_index, num_workers=0)
        dtype = DTYPES[self.dtype]
        position = {i: k for k, i in enumerate(indices)}
        out: list = [False] * len(indices)
        self._check_disk(split, len(indices), sum(durations[i] for i in indices), backbone, layers, pooled)
        with Progress(transient=True) as progress:
            bar = progress.add_task(f"caching {split} features", total=len(indices))
            for batch, items in loader:
                if batch:
                    hidden, flens = backbone(batch["wavs"].to(device), batch["lengths"].to(device))
                    stack = torch.stack([hidden[i] for i in layers], dim=1)  # (B, L, T, D)
                    if pooled:  # per-layer means over each clip's valid frames, the whole batch at once
                        b, n_layers, t_max, d = stack.shape
                        means = masked_mean(
                            stack.reshape(b * n_layers, t_max, d), flens.repeat_interleave(n_layers)
                        )
                        means = means.reshape(b, n_layers, d).to(dtype).cpu()
                    for k, i in enumerate(batch["index"].tolist()):
                        t = int(flens[k])
                        if pooled:
                            feats = means[k].clone()  # (L, D)
                        else:
                            feats = stack[k, :, :t].transpose(0, 1).to(dtype).cpu().clone()  # (T, L, D)
                        out[position[i]] = (feats, t)
                progress.advance(bar, len(items))
        backbone.train(was_training).to(home)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return out

    def _check_disk(self, split: str, n: int, seconds: float, backbone, layers, pooled) -> None:
        """Estimate the cache's size before writing; refuse clearly when the disk cannot hold it."""
        bytes_per = (
            torch.tensor([], dtype=DTYPES[self.dtype]).element_size() * len(layers) * backbone.hidden_size
        )
        frames = n if pooled else seconds * backbone.sample_rate / backbone.downsample_rate
        estimate = frames * bytes_per
        self.dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.dir).free
        log.info("feature cache %s: about %.1f MB to write in %s", split, estimate / 1e6, self.dir)
        if estimate > 0.9 * free:
            raise OSError(
                f"feature cache needs about {estimate / 1e9:.1f} GB but {self.dir} has {free / 1e9:.1f} GB free:"
                " set data.cache_dir elsewhere, data.cache_dtype=float16, or backbone.cache=off"
            )

    def write(self, path: Path, data: dict) -> None:
        """Temp file + rename: a reader sees the whole file or none (also across DDP ranks)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(data, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _load(path: Path) -> dict:
    # weights_only: a cache file holds tensors and strings only; loading it runs no code.
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _unpack(data: dict, j: int):
    """Clip ``j`` of a packed shard: (features, frame length), or False for a clip that failed to load."""
    if not bool(data["valid"][j]):
        return False
    if data.get("offsets") is None:
        return data["features"][j], int(data["frame_lengths"][j])
    off = data["offsets"]
    return data["features"][off[j] : off[j + 1]], int(data["frame_lengths"][j])


def _pack(clips: list, ids: list[str], pooled: bool, n_layers: int, hidden: int, dtype) -> dict:
    """Per-clip features -> one file: (N, L, D) pooled, or frames concatenated (sum T, L, D) + offsets."""
    n = len(clips)
    valid = torch.tensor([c is not False for c in clips], dtype=torch.bool)
    frame_lengths = torch.tensor([c[1] if c is not False else 0 for c in clips], dtype=torch.long)
    empty = torch.zeros((n_layers, hidden) if pooled else (0, n_layers, hidden), dtype=dtype)
    feats = [c[0].to(dtype) if c is not False else empty for c in clips]
    data = {"frame_lengths": frame_lengths, "valid": valid, "clips": list(ids)}
    if pooled:
        data["features"] = torch.stack(feats) if feats else empty[None][:0]
        return data
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor([f.shape[0] for f in feats], dtype=torch.long), 0)
    data["features"], data["offsets"] = (torch.cat(feats) if feats else empty), offsets
    return data


class _Memo:
    """Backbone proxy that computes the weight fingerprint once per attach (not once per split)."""

    def __init__(self, backbone, memo: dict) -> None:
        self.backbone, self.memo = backbone, memo

    def identity(self) -> str:
        return self.backbone.identity()

    def fingerprint(self) -> str:
        if "fp" not in self.memo:
            self.memo["fp"] = self.backbone.fingerprint()
        return self.memo["fp"]


def _collate_keep_index(items: list) -> tuple[dict, list]:
    """Like ``pad_batch`` but also reports how many items the batch held (skipped ones included)."""
    return pad_batch(items), items
