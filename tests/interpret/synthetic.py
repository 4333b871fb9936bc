"""A head whose answer depends on one known time window: the ground truth attribution tests check against."""

import torch

from asr_transfer.featurizers import SingleLayer
from asr_transfer.heads import LinearHead
from asr_transfer.interpret.attribute import FrameModel

WINDOW = slice(20, 30)  # frames 20..29 of 50 carry the class


def window_task(n: int = 24, classes: int = 3, frames: int = 50, seed: int = 0):
    """(model, frames (n, 1, frames, classes), lengths, labels): outside the window only small noise;
    inside it a one-hot of the label, which the identity head reads through mean pooling."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = 0.05 * torch.randn(n, 1, frames, classes, generator=g)
    x[:, 0, WINDOW] += 3.0 * torch.nn.functional.one_hot(labels, classes).float()[:, None, :]
    head = LinearHead(classes, classes, input_norm=False)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(classes))
        head.linear.bias.zero_()
    model = FrameModel(SingleLayer(1, classes, layer=0), head)
    return model, x, torch.full((n,), frames), labels
