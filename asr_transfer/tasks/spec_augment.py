"""SpecAugment on a backbone's output frames (time and channel masks, as in wav2vec2 fine-tuning).

It runs on the task's side, after the featurizer and before the head, so it works the same on
frames the backbone computes now and on frames read from the feature cache (the frozen backbone
then runs once, before training). Masked values are set to zero.

Span semantics follow transformers' ``_compute_mask_indices`` (fairseq's ``compute_mask_indices``):
a sequence of ``n`` valid frames gets ``int(mask_prob * n / mask_length + u)`` spans (``u`` uniform
in [0, 1): a probabilistic rounding, so the expected count is ``mask_prob * n / mask_length``),
starting at distinct frames drawn uniformly from ``0 .. n - mask_length`` (spans may overlap,
never leave the valid frames). Channel spans are drawn once per sequence and mask every frame.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_transfer.utils.rng import clip_generator


def span_starts(n: int, mask_prob: float, mask_length: int, gen: torch.Generator) -> Tensor:
    """Start positions of the spans masked in a sequence of ``n`` valid positions."""
    if n <= 0 or mask_prob <= 0.0:
        return torch.zeros(0, dtype=torch.long)
    length = min(mask_length, n)
    count = int(mask_prob * n / length + float(torch.rand((), generator=gen)))
    count = min(count, n - length + 1)
    return torch.randperm(n - length + 1, generator=gen)[:count]


def span_mask(lengths: Tensor, size: int, mask_prob: float, mask_length: int, gen: torch.Generator) -> Tensor:
    """(batch, size) bool: True where masked; only the first ``lengths[b]`` positions can be."""
    mask = torch.zeros(len(lengths), size, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        length = min(mask_length, n)
        for s in span_starts(n, mask_prob, mask_length, gen).tolist():
            mask[b, s : s + length] = True
    return mask


class SpecAugment(nn.Module):
    """Time and channel masks for training. Defaults are ``Wav2Vec2Config``'s (time 0.05 x 10 frames,
    no channel masks); fairseq's low-resource fine-tuning uses time 0.65 x 10, channels 0.25-0.5 x 64.

    ``forward(frames: (batch, time, dim), lengths: (batch,), step, rank)`` draws from a generator seeded
    by (seed, step, rank), so a resumed run masks exactly as the uninterrupted one and DDP ranks differ. Keeps running totals of
    the valid frames and channels masked (the run's summary reports them).
    """

    name = "specaugment"

    def __init__(
        self,
        mask_time_prob: float = 0.05,
        mask_time_length: int = 10,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, prob in (("mask_time_prob", mask_time_prob), ("mask_feature_prob", mask_feature_prob)):
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"augment.specaugment.{key}={prob}: a probability in [0, 1]")
        for key, n in (("mask_time_length", mask_time_length), ("mask_feature_length", mask_feature_length)):
            if n < 1:
                raise ValueError(f"augment.specaugment.{key}={n}: at least 1")
        self.mask_time_prob, self.mask_time_length = mask_time_prob, mask_time_length
        self.mask_feature_prob, self.mask_feature_length = mask_feature_prob, mask_feature_length
        self.seed = seed
        self.totals = {"frames": 0, "frames_masked": 0, "channels": 0, "channels_masked": 0, "batches": 0}

    def masks(self, lengths: Tensor, time: int, dim: int, step: int, rank: int = 0) -> tuple[Tensor, Tensor]:
        gen = clip_generator(self.seed, step, rank, self.name)
        lengths = lengths.cpu()
        t = span_mask(lengths, time, self.mask_time_prob, self.mask_time_length, gen)
        c = span_mask(
            torch.full_like(lengths, dim), dim, self.mask_feature_prob, self.mask_feature_length, gen
        )
        return t, c

    def forward(self, frames: Tensor, lengths: Tensor | None, step: int, rank: int = 0) -> Tensor:
        if frames.dim() != 3 or lengths is None:
            raise ValueError(
                "augment=specaugment needs frames (batch, time, dim) with lengths; it got pooled vectors "
                "(a feature cache of pooled features: the cache must store frames when SpecAugment is on)"
            )
        b, time, dim = frames.shape
        t, c = self.masks(lengths, time, dim, step, rank)
        self.totals["frames"] += int(lengths.sum())
        self.totals["frames_masked"] += int(t.sum())
        self.totals["channels"] += b * dim
        self.totals["channels_masked"] += int(c.sum())
        self.totals["batches"] += 1
        valid = torch.arange(time)[None, :] < lengths.cpu()[:, None]
        drop = t[:, :, None] | (c[:, None, :] & valid[:, :, None])  # padding is left as it came
        keep = ~drop.to(frames.device)
        return frames * keep.to(frames.dtype)

    def summary(self) -> dict[str, float]:
        tot = self.totals
        return {
            "augment/specaugment/batches": float(tot["batches"]),
            "augment/specaugment/time_masked_fraction": tot["frames_masked"] / max(tot["frames"], 1),
            "augment/specaugment/channel_masked_fraction": tot["channels_masked"] / max(tot["channels"], 1),
        }
