"""The frozen-features store: shards, index, backbone cards, distributed encoding (``stage.py``)."""

from asr_transfer.features.stage import FeatureSet, FeatureStore

__all__ = ["FeatureSet", "FeatureStore"]
