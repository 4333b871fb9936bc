"""The frozen-features stage: shards, index, backbone cards, distributed encoding (``stage.py``)."""

from asr_transfer.features.stage import FeatureSet, FeaturesStage, cacheable

__all__ = ["FeatureSet", "FeaturesStage", "cacheable"]
