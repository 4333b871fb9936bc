"""What the exact probe minimises and how it ranks the L2 grid on val, per kind of target.

Each loss is a mean over clips of a sum over outputs, so with the probe's ``l2 / 2 * ||W||^2`` the
problem separates per output exactly as scikit-learn's estimators do: ``SOFTMAX`` is
``LogisticRegression(C=1 / (l2 * n))``, ``ONE_VS_REST`` is that per class (``OneVsRestClassifier``),
``squared_error`` is ``Ridge(alpha=l2 * n / 2)`` (tests/probe/test_objectives.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import multilabel_average_precision


@dataclass(frozen=True)
class Objective:
    """``loss(outputs, targets)``: the fitted loss (a scalar); ``score(outputs, targets)``: a float, higher
    is better, named ``score_name`` in probe.csv (the L2 with the best val score is kept)."""

    loss: Callable[[Tensor, Tensor], Tensor]
    score: Callable[[Tensor, Tensor], float]
    score_name: str
    target_key: str = "labels"  # the batch key the targets arrive under


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(-1) == y).double().mean())


def _one_vs_rest(logits: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / len(y)


def _mean_average_precision(logits: Tensor, y: Tensor) -> float:
    # classes without a positive clip have no precision-recall curve: left out of the mean
    return float(multilabel_average_precision(logits.float(), y.long(), y.shape[1], average="macro"))


SOFTMAX = Objective(F.cross_entropy, _accuracy, "acc")
ONE_VS_REST = Objective(_one_vs_rest, _mean_average_precision, "map")


def squared_error(mean: Tensor, std: Tensor, target_key: str = "targets") -> Objective:
    """Ridge on standardised targets ``(y - mean) / std`` (the head predicts standardised values); the
    score is minus the val mean squared error in the targets' own units."""

    def loss(out: Tensor, y: Tensor) -> Tensor:
        z = (y.to(out.dtype) - mean.to(out)) / std.to(out)
        return ((out - z) ** 2).sum() / len(y)

    def score(out: Tensor, y: Tensor) -> float:
        return -float(((out * std.to(out) + mean.to(out) - y.to(out)) ** 2).mean())

    return Objective(loss, score, "neg_mse", target_key)
