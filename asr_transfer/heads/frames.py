"""Frame-level heads for CTC: every frame gets a distribution over the vocabulary (blank = id 0).

``forward(frames (B, T, D), lengths (B,)) -> logits (B, T, vocab_size)``; padded frames come back
as well (their values are ignored by the loss and the decoders, which read ``lengths``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr_transfer.heads.base import Head

SUPERB_HIDDEN = 1024  # SUPERB's ASR head, per direction (conf/head/ctc_blstm.yaml says why it uses less)


class FrameHead(Head):
    """Dropout on the input frames (``self.dropout``), then the subclass's layers."""

    output = "frames"
    pools_first = False

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)


class CTCLinearHead(FrameHead):
    """Dropout + one linear layer over the vocabulary: the wav2vec2 fine-tuning recipe."""

    def __init__(self, input_size: int, vocab_size: int, dropout: float = 0.1) -> None:
        super().__init__(dropout)
        self.linear = nn.Linear(input_size, vocab_size)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.linear(self.dropout(frames))


class CTCBLSTMHead(FrameHead):
    """Bidirectional LSTM (``num_layers`` x ``hidden_size`` per direction) + linear: SUPERB's ASR head.

    Sequences are packed by ``lengths``, so padding never leaks into the backward direction and a
    clip's output does not depend on what it is batched with.
    """

    def __init__(
        self,
        input_size: int,
        vocab_size: int,
        hidden_size: int = SUPERB_HIDDEN,
        num_layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(dropout)
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.linear = nn.Linear(2 * hidden_size, vocab_size)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        b, t, _ = frames.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        # zero-length clips (skipped by the loss) still need one step to pack
        packed = pack_padded_sequence(
            self.dropout(frames), lengths.clamp(1, t).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        return self.linear(self.dropout(out))
