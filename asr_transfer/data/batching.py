"""Length-aware batching and padding.

Training: shuffle, then sort inside windows of ``bucket_window`` batches and cut batches by a
clip count and/or a padded-seconds budget, then shuffle the batches (the fairseq/ESPnet recipe):
random order, little padding. Evaluation: globally sorted by length. Deterministic given
(seed, epoch); under DDP every rank gets the same number of batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices grouped by duration.

    Args:
      durations: seconds per sample (any consistent unit works).
      batch_size: at most this many clips per batch (None: only the seconds budget limits).
      max_batch_seconds: at most this many *padded* seconds per batch (longest clip x count).
      shuffle: training order (True) or sorted evaluation order (False).
      bucket: sort by length inside shuffled windows (True) or plain random batches (False).
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_size: int | None = 16,
        max_batch_seconds: float | None = None,
        shuffle: bool = True,
        bucket: bool = True,
        bucket_window: int = 50,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size is None and max_batch_seconds is None:
            raise ValueError("set data.batch_size or data.max_batch_seconds")
        self.durations = [float(d) for d in durations]
        self.batch_size = batch_size
        self.max_batch_seconds = max_batch_seconds
        self.shuffle, self.bucket, self.bucket_window = shuffle, bucket, bucket_window
        self.seed, self.epoch = seed, 0
        self._replicas, self._rank = num_replicas, rank
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> LengthBatchSampler:
        # Lightning calls set_epoch on ``loader.sampler`` and ``loader.batch_sampler.sampler``, never on
        # the batch sampler itself: without this every epoch would repeat epoch 0's order.
        return self

    def skip_batches(self, n: int) -> None:
        """Leave out this rank's first ``n`` batches of the next iteration only (resuming mid-epoch).
        ``len()`` stays the full epoch, as Lightning counts the skipped batches as done."""
        self._skip = int(n)

    def _world(self) -> tuple[int, int]:
        if self._replicas is not None:
            return self._replicas, self._rank or 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _cut(self, order: list[int]) -> list[list[int]]:
        batches, cur, longest = [], [], 0.0
        for i in order:
            d = self.durations[i]
            longest_if = max(longest, d)
            full = self.batch_size is not None and len(cur) >= self.batch_size
            over = (
                self.max_batch_seconds is not None
                and cur
                and longest_if * (len(cur) + 1) > self.max_batch_seconds
            )
            if full or over:
                batches.append(cur)
                cur, longest_if = [], d
            cur.append(i)
            longest = longest_if
        if cur:
            batches.append(cur)
        return batches

    def all_batches(self) -> list[list[int]]:
        """Every batch of this epoch, before the split across ranks."""
        n = len(self.durations)
        if not self.shuffle:
            return self._cut(sorted(range(n), key=lambda i: self.durations[i]))
        rng = random.Random(self.seed * 100003 + self.epoch)
        order = list(range(n))
        rng.shuffle(order)
        if self.bucket:
            window = (self.batch_size or 64) * self.bucket_window
            order = [
                i
                for s in range(0, n, window)
                for i in sorted(order[s : s + window], key=self.durations.__getitem__)
            ]
        batches = self._cut(order)
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        world, rank = self._world()
        if world > 1:
            # Equal batch counts on every rank (else DDP hangs): the last few batches repeat,
            # as torch's DistributedSampler repeats samples.
            per_rank = math.ceil(len(batches) / world)
            batches = (batches * 2)[: per_rank * world] if batches else batches
            batches = batches[rank::world]
        skip, self._skip = self._skip, 0
        return iter(batches[skip:])

    def __len__(self) -> int:
        world, _ = self._world()
        return math.ceil(len(self.all_batches()) / world)

    def padding_fraction(self) -> float:
        """Share of padded samples in this epoch's batches (0 = no padding)."""
        real = padded = 0.0
        for b in self.all_batches():
            ds = [self.durations[i] for i in b]
            real += sum(ds)
            padded += max(ds) * len(ds)
        return 0.0 if padded == 0 else 1.0 - real / padded


def pad_batch(items: list[dict], targets=None) -> dict | None:
    """Collate dicts of tensors: 1-D ``wav``/``features`` are padded and lengths kept.

    Items that are ``None`` (skipped bad audio) are dropped. Keys:
      wavs (B, S) + lengths (B,), or features (B, L, D) / (B, L, T, D) + frame_lengths (B,),
      index (B,), what ``targets.collate`` makes of the items' ``target`` values (e.g. labels (B,)),
      and any list-valued extras.
    """
    items = [it for it in items if it is not None]
    if not items:
        return None  # every clip skipped: Lightning skips a None training batch; tasks skip eval ones
    out: dict = {"index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
    if "wav" in items[0]:
        lengths = torch.tensor([it["wav"].shape[-1] for it in items], dtype=torch.long)
        wavs = torch.zeros(len(items), int(lengths.max()))
        for k, it in enumerate(items):
            wavs[k, : it["wav"].shape[-1]] = it["wav"]
        out["wavs"], out["lengths"] = wavs, lengths
    if "features" in items[0]:
        feats = [it["features"] for it in items]
        if feats[0].dim() == 3:  # (L, T, D) frames
            t = max(f.shape[1] for f in feats)
            padded = feats[0].new_zeros(len(feats), feats[0].shape[0], t, feats[0].shape[2])
            for k, f in enumerate(feats):
                padded[k, :, : f.shape[1]] = f
            out["features"] = padded
        else:
            out["features"] = torch.stack(feats)
        out["frame_lengths"] = torch.tensor([it["frame_length"] for it in items], dtype=torch.long)
    if targets is not None and "target" in items[0]:
        out.update(targets.collate([it["target"] for it in items]))
    for key in items[0]:
        if key not in ("wav", "features", "frame_length", "index", "target") and not torch.is_tensor(
            items[0][key]
        ):
            out[key] = [it[key] for it in items]
    return out
