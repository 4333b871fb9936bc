"""Frame (CTC) heads: shapes and padding invariance."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.heads.frames import CTCBLSTMHead, CTCLinearHead


# ----- heads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_cls", [CTCLinearHead, CTCBLSTMHead])
def test_frame_heads_shape_and_padding_invariance(head_cls):
    torch.manual_seed(0)
    kwargs = {"hidden_size": 8} if head_cls is CTCBLSTMHead else {}
    head = head_cls(input_size=6, vocab_size=9, **kwargs).eval()
    a, b = torch.randn(1, 7, 6), torch.randn(1, 4, 6)
    batch = torch.zeros(2, 7, 6)
    batch[0], batch[1, :4] = a[0], b[0]
    out = head(batch, torch.tensor([7, 4]))
    assert out.shape == (2, 7, 9)
    # the short clip's frames do not depend on its padding (packed BiLSTM)
    torch.testing.assert_close(out[1, :4], head(b, torch.tensor([4]))[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], head(a, torch.tensor([7]))[0], atol=1e-5, rtol=1e-5)
