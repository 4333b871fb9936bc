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
from torch.utils.data import DataLoader, Dataset

from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.heads import masked_mean

log = logging.getLogger(__name__)
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


class CachedFeatureDataset(Dataset):
    """Items like ``AudioDataset``'s but with ``features`` (L, D) or (L, T, D) instead of ``wav``."""

    def __init__(self, data: dict, base: Dataset) -> None:
        self.base = base
        self.features, self.frame_lengths = data["features"], data["frame_lengths"]
        self.offsets = data.get("offsets")
        self.valid = data["valid"]
        self.keep = [i for i in range(len(base)) if bool(self.valid[i])]

    def __len__(self) -> int:
        return len(self.keep)

    @property
    def durations(self) -> list[float]:
        d = self.base.durations
        return [d[i] for i in self.keep]

    def __getitem__(self, j: int) -> dict:
        i = self.keep[j]
        if self.offsets is None:
            feats = self.features[i]
        else:
            feats = self.features[self.offsets[i] : self.offsets[i + 1]].transpose(0, 1)
        item = {"features": feats.float(), "frame_length": int(self.frame_lengths[i]), "index": i}
        e = self.base.entries[i]
        if self.base.label_index is not None:
            item["label"] = self.base.label_index[e.label]
        if e.text is not None:
            item["text"] = e.text
        return item


class FeatureCache:
    """``attach(datamodule, task)`` swaps each split's dataset for cached features (computing misses)."""

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        dtype: str = "float16",
        batch_seconds: float = 60.0,
        max_batch_size: int = 64,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"data.cache_dtype={dtype!r}: use one of {list(DTYPES)}")
        self.dir, self.dtype = Path(cache_dir), dtype
        self.batch_seconds, self.max_batch_size = batch_seconds, max_batch_size
        self.hits: dict[str, bool] = {}

    def key(self, backbone, layers: list[int], pooled: bool, dataset) -> str:
        files = []
        for e in dataset.entries:
            try:
                st = os.stat(e.audio_filepath)
                files.append([e.audio_filepath, st.st_size, st.st_mtime_ns, e.offset, e.duration])
            except OSError:
                files.append([e.audio_filepath, None, None, e.offset, e.duration])
        spec = {
            "backbone": backbone.identity(),
            "weights": backbone.fingerprint(),
            "layers": layers,
            "pooled": pooled,
            "dtype": self.dtype,
            "sample_rate": dataset.sample_rate,
            "max_samples": dataset.max_samples,
            "files": files,
            "version": 1,
        }
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def attach(self, datamodule, task) -> None:
        layers, pooled = task.featurizer.layers_used(), task.pools_first
        fingerprint_cache: dict = {}
        for split, ds in list(datamodule.datasets.items()):
            if isinstance(ds, CachedFeatureDataset):
                continue
            key = self.key(_Memo(task.backbone, fingerprint_cache), layers, pooled, ds)
            path = self.dir / f"{split}-{key}.pt"
            t0 = time.perf_counter()
            if path.is_file():
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                self.hits[split] = True
                log.info("feature cache HIT  %s: %s (%.2f s)", split, path, time.perf_counter() - t0)
            else:
                data = self.compute(task.backbone, ds, layers, pooled, split)
                self.write(path, data)
                self.hits[split] = False
                log.info(
                    "feature cache MISS %s: computed %d clips in %.1f s -> %s (%.1f MB)",
                    split,
                    len(ds),
                    time.perf_counter() - t0,
                    path,
                    path.stat().st_size / 1e6,
                )
            datamodule.datasets[split] = CachedFeatureDataset(data, ds)

    @torch.inference_mode()
    def compute(self, backbone, dataset, layers: list[int], pooled: bool, split: str) -> dict:
        from rich.progress import Progress

        was_training = backbone.training
        backbone.eval()
        n = len(dataset)
        sampler = LengthBatchSampler(
            dataset.durations,
            batch_size=self.max_batch_size,
            max_batch_seconds=self.batch_seconds,
            shuffle=False,
        )
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate_keep_index, num_workers=0)
        dtype = DTYPES[self.dtype]
        valid = torch.zeros(n, dtype=torch.bool)
        frame_lengths = torch.zeros(n, dtype=torch.long)
        per_clip: list[torch.Tensor | None] = [None] * n
        device = next(backbone.parameters()).device
        self._check_disk(dataset, backbone, layers, pooled)
        with Progress(transient=True) as progress:
            bar = progress.add_task(f"caching {split} features", total=n)
            for batch, indices in loader:
                if batch:
                    hidden, flens = backbone(batch["wavs"].to(device), batch["lengths"].to(device))
                    stack = torch.stack([hidden[i] for i in layers], dim=1)  # (B, L, T, D)
                    for k, i in enumerate(batch["index"].tolist()):
                        t = int(flens[k])
                        if pooled:
                            per_clip[i] = masked_mean(stack[k], flens[k].expand(len(layers))).to(dtype).cpu()
                        else:
                            per_clip[i] = stack[k, :, :t].transpose(0, 1).to(dtype).cpu()  # (T, L, D)
                        frame_lengths[i], valid[i] = t, True
                progress.advance(bar, len(indices))
        backbone.train(was_training)
        zero = torch.zeros(
            (len(layers), backbone.hidden_size) if pooled else (0, len(layers), backbone.hidden_size),
            dtype=dtype,
        )
        filled = [c if c is not None else zero for c in per_clip]
        if pooled:
            return {"features": torch.stack(filled), "frame_lengths": frame_lengths, "valid": valid}
        offsets = torch.zeros(n + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor([c.shape[0] for c in filled]), 0)
        return {
            "features": torch.cat(filled),
            "offsets": offsets,
            "frame_lengths": frame_lengths,
            "valid": valid,
        }

    def _check_disk(self, dataset, backbone, layers, pooled) -> None:
        """Estimate the cache's size before writing; refuse clearly when the disk cannot hold it."""
        bytes_per = (
            torch.tensor([], dtype=DTYPES[self.dtype]).element_size() * len(layers) * backbone.hidden_size
        )
        frames = (
            len(dataset)
            if pooled
            else sum(d * backbone.sample_rate / backbone.downsample_rate for d in dataset.durations)
        )
        estimate = frames * bytes_per
        self.dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.dir).free
        log.info("feature cache: about %.1f MB to write in %s", estimate / 1e6, self.dir)
        if estimate > 0.9 * free:
            raise OSError(
                f"feature cache needs about {estimate / 1e9:.1f} GB but {self.dir} has {free / 1e9:.1f} GB free:"
                " set data.cache_dir elsewhere, data.cache_dtype=float16, or backbone.cache=off"
            )

    def write(self, path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(data, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


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
