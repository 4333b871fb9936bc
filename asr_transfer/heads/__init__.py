"""Heads: utterance heads (pool, then classify) and frame heads (a distribution per frame, for CTC)."""

from asr_transfer.heads.base import Head
from asr_transfer.heads.frames import CTCBLSTMHead, CTCLinearHead, FrameHead
from asr_transfer.heads.utterance import AttentiveHead, LinearHead, MLPHead, UtteranceHead

__all__ = [
    "AttentiveHead",
    "CTCBLSTMHead",
    "CTCLinearHead",
    "FrameHead",
    "Head",
    "LinearHead",
    "MLPHead",
    "UtteranceHead",
]
