"""CTC explained: the emitted tokens of the best path, the posteriorgram, and per-token attributions that
sit on the frame each token comes from (a per-frame linear head, so the truth is known)."""

import torch

from asr_transfer.featurizers import SingleLayer
from asr_transfer.heads.frames import CTCLinearHead
from asr_transfer.interpret.attribute import FrameModel
from asr_transfer.interpret.ctc import ctc_figure, emitted_tokens, posteriorgram, token_attributions


def test_emitted_tokens_are_the_first_frame_of_each_non_blank_run():
    best = [0, 2, 2, 0, 2, 3, 3, 0, 1]
    logits = torch.nn.functional.one_hot(torch.tensor(best), 4).float()
    assert emitted_tokens(logits, len(best)) == [(1, 2), (4, 2), (5, 3), (8, 1)]
    assert emitted_tokens(logits, 6) == [(1, 2), (4, 2), (5, 3)]  # frames past the length are ignored
    post = posteriorgram(logits, 6)
    assert post.shape == (4, 6) and torch.allclose(post.sum(0), torch.ones(6))


def test_each_tokens_attribution_sits_on_its_own_frame():
    vocab, frames = 4, 12
    head = CTCLinearHead(vocab, vocab, dropout=0.0)
    with torch.no_grad():  # logits = the frame itself: token v wins where feature v is high
        head.linear.weight.copy_(torch.eye(vocab))
        head.linear.bias.zero_()
    model = FrameModel(SingleLayer(1, vocab, layer=0), head)
    x = torch.zeros(1, 1, frames, vocab)
    x[0, 0, :, 0] = 1.0  # blank everywhere...
    for t, v in [(2, 1), (6, 3), (9, 2)]:  # ...except three tokens
        x[0, 0, t, v] = 3.0
    lengths = torch.tensor([frames])
    with torch.no_grad():
        tokens = emitted_tokens(model(x, lengths)[0], frames)
    assert tokens == [(2, 1), (6, 3), (9, 2)]
    attr = token_attributions(model, x, lengths, tokens, method="input_x_gradient")
    assert attr.shape == (3, frames)
    assert attr.argmax(1).tolist() == [2, 6, 9]
    assert torch.allclose(attr.sum(1), torch.tensor([3.0, 3.0, 3.0]))  # linear: x * grad is the logit
    fig = ctc_figure(posteriorgram(model(x, lengths)[0].detach(), frames), ["a", "c", "b"], attr, 0.24, "t")
    assert len(fig.axes) == 2
