"""What every head declares: what it outputs, and whether it reads only the mean over frames."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn


class Head(nn.Module):
    """``forward(frames (B, T, D), lengths (B,)) -> logits``.

    ``output``: "utterance" (one vector per clip, ``(B, C)``: classification) or "frames" (one per
    frame, ``(B, T, V)``: recognition). Tasks and tests read this attribute, never the module name.
    ``pools_first``: the head is a function of the mean over valid frames only, so the feature cache
    may store per-layer means instead of frames.
    """

    output: ClassVar[Literal["utterance", "frames"]]
    pools_first: ClassVar[bool] = False

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        raise NotImplementedError
