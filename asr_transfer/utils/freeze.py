"""Freeze policies: which layers of a pretrained stack train. One check for every stack that has one
(a backbone, Whisper's decoder), so the allowed values and their messages live once."""

from __future__ import annotations

FREEZE_POLICIES = ("all", "none", "feature_encoder", "top_k")


def check_freeze_policy(freeze: str, top_k: int, where: str) -> None:
    """``<where>.freeze`` / ``<where>.top_k``: the one check of a stack's freeze policy (backbones, decoders)."""
    if freeze not in FREEZE_POLICIES:
        raise ValueError(f"{where}.freeze={freeze!r} is not one of {list(FREEZE_POLICIES)}")
    if freeze == "top_k" and int(top_k) <= 0:
        raise ValueError(f"{where}.freeze=top_k needs {where}.top_k >= 1 (how many top layers train)")
