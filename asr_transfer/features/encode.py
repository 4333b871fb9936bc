"""The encoding pass: run a frozen backbone over clips and stream what the featurizer reads into shards."""

from __future__ import annotations

import logging
import random
import time

import torch
from torch.utils.data import DataLoader, Dataset

from asr_transfer.data.batching import LengthBatchSampler, pad_batch
from asr_transfer.features.store import DTYPES, ShardWriter
from asr_transfer.utils.masks import masked_mean

log = logging.getLogger(__name__)
ESTIMATE_AFTER = 5  # batches measured before the size and time of the whole pass are extrapolated


class Clips(Dataset):
    """The clips to encode, drawn from several splits' ``AudioDataset``s: ``(dataset, index)`` pairs."""

    def __init__(self, items: list[tuple]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    @property
    def durations(self) -> list[float]:
        return [ds.entries[i].duration or 0.0 for ds, i in self.items]

    def __getitem__(self, k: int) -> dict:
        ds, i = self.items[k]
        item = ds[i]
        return {"index": k, "bad": True} if item is None else {**item, "index": k}


def collate(items: list[dict]) -> tuple[dict | None, list[int]]:
    """Padded batch of the clips that decoded, and the positions of those that did not."""
    bad = [it["index"] for it in items if it.get("bad")]
    return pad_batch([it for it in items if not it.get("bad")]), bad


def batches(clips: Clips, batch_seconds: float, max_batch_size: int) -> list[list[int]]:
    """Length-sorted batches (little padding), in a fixed shuffled order so that the first few
    batches are a fair sample of the whole pass (the size and time estimate comes from them)."""
    sampler = LengthBatchSampler(
        clips.durations, batch_size=max_batch_size, max_batch_seconds=batch_seconds, shuffle=False
    )
    out = sampler.all_batches()
    random.Random(0).shuffle(out)
    return out


@torch.inference_mode()
def encode(
    backbone,
    clips: Clips,
    ids: list[str],
    layers: list[int],
    pooled: bool,
    writer: ShardWriter,
    batch_seconds: float = 60.0,
    max_batch_size: int = 64,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> dict:
    """Encode ``clips`` (their clip ids in ``ids``) into ``writer``; returns the pass's statistics.

    Per clip: the ``layers`` hidden states, as one (layers x hidden) row of means over valid
    frames (``pooled``: exact for heads that pool first) or one row per valid frame.
    """
    from rich.progress import Progress

    device = device or next(backbone.parameters(), torch.empty(0)).device
    backbone.eval().to(device)
    dtype = DTYPES[writer.dtype]
    order = batches(clips, batch_seconds, max_batch_size)
    loader = DataLoader(clips, batch_sampler=order, collate_fn=collate, num_workers=num_workers)
    total_s = sum(clips.durations)
    stats = {"clips": len(clips), "audio_s": total_s, "estimate_bytes": None, "estimate_s": None}
    done_s, t0, t_est = 0.0, time.perf_counter(), None
    try:
        with Progress(transient=True) as progress:
            bar = progress.add_task("encoding features", total=len(clips))
            for b, (batch, bad) in enumerate(loader):
                for k in bad:
                    writer.add(ids[k], None)
                if batch is not None:
                    hidden, flens = backbone(batch["wavs"].to(device), batch["lengths"].to(device))
                    stack = torch.stack([hidden[i] for i in layers], dim=2)  # (B, T, L, D)
                    bsz, t_max = stack.shape[:2]
                    rows = stack.reshape(bsz, t_max, -1)  # one row of L x D values per frame
                    if pooled:  # a mean per column is a mean per layer and dimension
                        rows = masked_mean(rows, flens).unsqueeze(1)
                    rows = rows.to(dtype).cpu()
                    for k, idx in enumerate(batch["index"].tolist()):
                        t = int(flens[k])
                        writer.add(ids[idx], rows[k] if pooled else rows[k, :t], t)
                    done_s += float(batch["lengths"].sum()) / clips.items[0][0].sample_rate
                progress.advance(bar, len(order[b]))
                if b == 0:  # the first batch pays for warm-up: timed from the second when there is one
                    t_est = time.perf_counter() if len(order) > 1 else t0
                if stats["estimate_s"] is None and b in (ESTIMATE_AFTER, len(order) - 1):
                    timed = order[1 : b + 1] if b > 0 else order[:1]
                    _estimate(stats, writer, done_s, total_s, time.perf_counter() - t_est, timed, clips)
    except BaseException:
        writer.abandon()
        raise
    writer.commit()
    stats["seconds"] = time.perf_counter() - t0
    stats["bytes"] = writer.bytes_written
    return stats


def _estimate(stats, writer, done_s, total_s, seconds, timed, clips) -> None:
    """Disk size and time of the whole pass, extrapolated from what the first batches cost."""
    written = writer.bytes_written + (writer.size if writer._file is not None else 0)
    if done_s <= 0:
        return
    timed_s = sum(clips.durations[i] for b in timed for i in b) or done_s
    stats["estimate_bytes"] = written / done_s * total_s
    stats["estimate_s"] = seconds / timed_s * total_s
    log.info(
        "features: this pass will write about %.1f MB and take about %.0f s (from its first batches)",
        stats["estimate_bytes"] / 1e6,
        stats["estimate_s"],
    )
