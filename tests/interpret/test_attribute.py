import pytest
import torch

from asr_transfer.interpret.attribute import frame_attributions, occlusion_over_time, positive_share
from tests.interpret.synthetic import WINDOW, window_task


@pytest.mark.parametrize("method", ["integrated_gradients", "input_x_gradient"])
def test_frame_attributions_put_their_mass_on_the_deciding_window(method):
    model, x, lengths, labels = window_task()
    attr = frame_attributions(model, x, lengths, method=method)
    assert attr.shape == (x.shape[0], x.shape[2])
    inside = torch.zeros_like(attr, dtype=torch.bool)
    inside[:, WINDOW] = True
    assert positive_share(attr, inside).min() > 0.9


def test_saliency_is_sensitivity_not_evidence():
    """|gradient| of a mean-pooled linear head is the same on every frame: it cannot find the window,
    which is why saliency is offered for comparison and never as the default."""
    model, x, lengths, labels = window_task()
    attr = frame_attributions(model, x, lengths, method="saliency")
    assert torch.allclose(attr, attr[:, :1].expand_as(attr))


def test_frame_attributions_are_zero_on_padding_and_follow_the_chosen_class():
    model, x, lengths, labels = window_task()
    lengths = lengths.clone()
    lengths[0] = 40
    attr = frame_attributions(model, x, lengths)
    assert torch.all(attr[0, 40:] == 0)
    other = (labels + 1) % 3
    against = frame_attributions(model, x, lengths, target=other)
    assert against[:, WINDOW].sum(1).max() < 0.05  # the window holds nothing for another class


def test_occlusion_over_time_finds_the_window_in_audio():
    # "audio" model: class = which quarter of the clip holds the loudest stretch
    def model(wavs, lengths):
        return wavs.abs().reshape(wavs.shape[0], 4, -1).mean(-1)

    wavs = 0.01 * torch.randn(3, 400, generator=torch.Generator().manual_seed(0))
    for i, quarter in enumerate([0, 2, 3]):
        wavs[i, quarter * 100 : quarter * 100 + 50] += 1.0
    lengths = torch.full((3,), 400)
    attr = occlusion_over_time(model, wavs, lengths, window=50)
    assert attr.shape == (3, 8)
    assert attr.argmax(1).tolist() == [0, 4, 6]
    short = occlusion_over_time(model, wavs, torch.tensor([400, 400, 200]), window=50)
    assert torch.all(short[2, 4:] == 0)
