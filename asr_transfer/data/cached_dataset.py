"""What a split becomes once its features are cached: the clip's features instead of its audio."""

from __future__ import annotations

from torch.utils.data import Dataset


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
        return {**item, **self.base.target_item(i)}
