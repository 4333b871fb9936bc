"""The training split seen through its waveform augmentation: per epoch on the fly
(``AugmentedDataset`` with the ``EpochBatches`` sampler), or as fixed copies for the features
stage to store (``AugmentedCopies``)."""

from __future__ import annotations

from torch.utils.data import Dataset, Sampler

from asr_transfer.data.augment import WaveformAugment
from asr_transfer.utils.hashing import stable_hash


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """Wraps a batch sampler so each index arrives as ``(epoch, index)``: the epoch travels with the
    index into DataLoader workers (also persistent ones) and is restored with the sampler on resume."""

    def __init__(self, batches) -> None:
        self.batches = batches

    @property
    def sampler(self):
        return self.batches  # Lightning's set_epoch reaches the wrapped sampler through here

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        epoch = self.batches.epoch
        for batch in self.batches:
            yield [(epoch, i) for i in batch]


class AugmentedDataset(Dataset):
    """The training dataset with ``augment`` applied to each clip's ``wav``; keys are ``(epoch, index)``."""

    def __init__(self, base: Dataset, augment: WaveformAugment, seed: int) -> None:
        self.base, self.augment, self.seed = base, augment, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict | None:
        epoch, i = key
        item = self.base[i]
        if item is not None:
            item["wav"] = self.augment(item["wav"], self.seed, epoch, i, self.base.sample_rate)
        return item


class AugmentedCopies(Dataset):
    """``copies`` augmented versions of every clip of ``base`` as one dataset the features stage
    stores (``features.augmented_copies``): item ``c * len(base) + i`` is clip ``i`` exactly as
    epoch ``c`` of on-the-fly augmentation draws it (the same seeded streams), so training reads
    ``copies`` fixed augmented views from the store instead of running the backbone every step.
    ``view_ids`` tell the store the copies apart: augmentation identity, seed and copy index."""

    def __init__(self, base: Dataset, augment: WaveformAugment, seed: int, copies: int) -> None:
        if copies < 1:
            raise ValueError(f"features.augmented_copies={copies}: at least 1 (0: augment on the fly)")
        self.base, self.augment, self.seed, self.copies = base, augment, seed, copies
        self.split = base.split
        self.sample_rate, self.max_samples, self.min_samples = (
            base.sample_rate,
            base.max_samples,
            base.min_samples,
        )
        self.entries = list(base.entries) * copies
        tag = stable_hash([augment.identity(), seed], 16)
        n = len(base)
        self._views = [f"augment={tag}:copy={c}" for c in range(copies) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def durations(self) -> list[float]:
        return [e.duration or 0.0 for e in self.entries]

    def view_ids(self) -> list[str]:
        return self._views

    def target_item(self, j: int) -> dict:
        return self.base.target_item(j % len(self.base))

    def counts(self) -> dict[str, int]:
        """How many stored copies each augmentation changed (each copy is drawn once)."""
        return self.augment.counts(self.seed, self.copies, len(self.base))

    def __getitem__(self, j: int) -> dict | None:
        copy, i = divmod(j, len(self.base))
        item = self.base[i]
        if item is not None:
            item["wav"] = self.augment(item["wav"], self.seed, copy, i, self.base.sample_rate)
            item["index"] = j
        return item
