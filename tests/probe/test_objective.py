"""The closed-form probe objective: its value and gradient are autograd's, its fit is the autograd fit's, and
the fit of a fixed problem is pinned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr_transfer.featurizers import Concat, SingleLayer, WeightedSum
from asr_transfer.heads import LinearHead, MLPHead
from asr_transfer.probe.lbfgs import Features, LBFGSProbe
from asr_transfer.probe.objective import AutogradObjective, LinearObjective, linear_path
from tests.probe.test_lbfgs import blobs


def _pair(featurizer, head, seed=0):
    """float64 modules in a random state (layer logits too), a non-identity layer-norm affine."""
    g = torch.Generator().manual_seed(seed)
    featurizer.double().eval()
    head.double().eval()
    with torch.no_grad():
        for p in [*featurizer.parameters(), *head.parameters()]:
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        if isinstance(getattr(head, "norm", None), torch.nn.LayerNorm):
            head.norm.weight.add_(1.0)
    return featurizer, head


@pytest.mark.parametrize(
    "featurizer, input_norm",
    [(WeightedSum(3, 8), True), (WeightedSum(3, 8), False), (SingleLayer(3, 8), True), (Concat(3, 8), True)],
    ids=["weighted_sum", "weighted_sum-no-norm", "layer", "concat"],
)
def test_closed_form_gradient_equals_autograd(featurizer, input_norm):
    data = blobs(50, seed=5)
    featurizer, head = _pair(featurizer, LinearHead(featurizer.output_size, 4, input_norm=input_norm))
    x = data.x[:, featurizer.layers]
    fast = LinearObjective(featurizer, head, x, data.y)
    fitted, penalised = LBFGSProbe.parameters(featurizer, head)
    slow = AutogradObjective(featurizer, head, x, data.y, fitted, penalised)
    p = fast.pack()
    np.testing.assert_array_equal(p, slow.pack())  # the same vector layout: [layer logits | W | b]
    f_fast, g_fast = fast(p, 1e-2)
    f_slow, g_slow = slow(p, 1e-2)
    assert f_fast == pytest.approx(f_slow, rel=1e-12)
    np.testing.assert_allclose(g_fast, g_slow, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("input_norm", [True, False])
def test_float32_products_keep_the_value_and_gradient_to_float32_rounding(input_norm):
    data = blobs(50, seed=5)
    featurizer, head = _pair(WeightedSum(3, 8), LinearHead(8, 4, input_norm=input_norm))
    exact = LinearObjective(featurizer, head, data.x, data.y)
    fast = LinearObjective(featurizer, head, data.x, data.y, torch.float32)
    p = exact.pack()
    (f_exact, g_exact), (f_fast, g_fast) = exact(p, 1e-2), fast(p, 1e-2)
    assert f_fast == pytest.approx(f_exact, rel=1e-6)
    np.testing.assert_allclose(g_fast, g_exact, rtol=1e-4, atol=1e-6)


def test_which_pairs_take_the_closed_form():
    assert linear_path(WeightedSum(3, 8), LinearHead(8, 4))
    assert linear_path(Concat(3, 8), LinearHead(24, 4, input_norm=False))
    assert not linear_path(WeightedSum(3, 8, layer_norm=True), LinearHead(8, 4))
    assert not linear_path(SingleLayer(3, 8), MLPHead(8, 4))


def _fit(featurizer, head, data, l2=1e-2, **kw):
    torch.manual_seed(0)
    LBFGSProbe(l2_grid=[l2], **kw).fit(featurizer, head, data, None)
    return featurizer, head


def test_weighted_sum_fit_equals_the_generic_autograd_fit():
    """The closed-form path and the autograd path (LinearHead through AutogradObjective) reach the same optimum
    of the joint (non-convex) weighted-sum problem."""
    data = blobs(120, seed=1)
    fast = _fit(WeightedSum(3, 8), LinearHead(8, 4), data, precision="float64")
    probe = LBFGSProbe(l2_grid=[1e-2])
    torch.manual_seed(0)
    featurizer, head = WeightedSum(3, 8), LinearHead(8, 4)
    featurizer.double().eval()
    head.double().eval()
    fitted, penalised = probe.parameters(featurizer, head)
    probe.solve(AutogradObjective(featurizer, head, data.x, data.y, fitted, penalised), 1e-2)
    torch.testing.assert_close(fast[0].logits.double(), featurizer.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast[1].linear.weight.double(), head.linear.weight, atol=1e-4, rtol=0)


# The fit of one fixed problem (blobs(120, seed=1), weighted sum of 3 layers + LinearHead(8, 4), l2=1e-2),
# pinned from the autograd + torch.optim.LBFGS fit that preceded the closed-form path (commit 8b1e712).
# The two agree to 1e-6 in the layer weights, 2e-5 in the head's weights and 2e-11 in the objective (the new
# one is lower): the tolerances below are those, rounded up.
PINNED_LAYER_WEIGHTS = [0.35310355, 0.26366165, 0.38323486]
PINNED_CLASS0_WEIGHTS = [
    -0.48302463,
    0.86256295,
    0.60821611,
    -0.24734974,
    0.77314758,
    -0.24977607,
    -0.16305277,
    -1.10068929,
]
PINNED_OBJECTIVE = 0.311286582850018


# probe.precision=float32 (the default) runs the products over clips x dim in float32 and stops where float32
# rounding stops lowering the objective: on this problem its fit agrees with the pinned one to 1.1e-5 in the
# layer weights, 1.2e-4 in the head's weights and 1.1e-8 in the objective; the summation order of a matrix
# product moves them by that much, so the tolerances below are those x ~5
TOLERANCES = {"float64": (1e-5, 1e-4, 1e-9), "float32": (5e-5, 5e-4, 5e-8)}


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fit_of_a_fixed_problem_is_pinned(precision):
    layer_tol, head_tol, objective_tol = TOLERANCES[precision]
    data = blobs(120, seed=1)
    torch.manual_seed(0)
    featurizer, head = WeightedSum(3, 8), LinearHead(8, 4)
    result = LBFGSProbe(l2_grid=[1e-2], precision=precision).fit(featurizer, head, data, None)
    weights = featurizer.weights().detach().double()
    torch.testing.assert_close(
        weights, torch.tensor(PINNED_LAYER_WEIGHTS, dtype=torch.float64), atol=layer_tol, rtol=0
    )
    class0 = head.linear.weight[0].detach().double()
    torch.testing.assert_close(
        class0, torch.tensor(PINNED_CLASS0_WEIGHTS, dtype=torch.float64), atol=head_tol, rtol=0
    )
    assert result.table[0]["train/objective"] == pytest.approx(PINNED_OBJECTIVE, abs=objective_tol)


def test_precision_must_be_float32_or_float64():
    with pytest.raises(ValueError, match="probe.precision"):
        LBFGSProbe(precision="float16")


def _directional(objective, p, direction, l2, eps=1e-6):
    """(analytic, central-difference) derivative of ``objective`` along ``direction`` at ``p``."""
    analytic = objective(p, l2)[1] @ direction
    numeric = (objective(p + eps * direction, l2)[0] - objective(p - eps * direction, l2)[0]) / (2 * eps)
    return analytic, numeric


@pytest.mark.parametrize("featurizer", [SingleLayer(3, 8), WeightedSum(3, 8)], ids=["layer", "weighted_sum"])
def test_whitened_head_is_a_change_of_variables(featurizer):
    """Whitening moves the head's coordinates, not its problem: at the packed start the objective equals the
    raw one at the zero class-mean head, the gradient is the chain rule's, and unpacking writes that head."""
    data = blobs(80, seed=3)
    featurizer, head = _pair(featurizer, LinearHead(8, 4))
    x = data.x[:, featurizer.layers] if type(featurizer) is SingleLayer else data.x
    raw = LinearObjective(featurizer, head, x, data.y)
    whitened = raw.head_problem(1e-2)
    q = whitened.pack()
    whitened.unpack(q)  # the start, written back: the zero class-mean head
    assert head.linear.weight.sum(0).abs().max() < 1e-12
    f_raw, _ = raw(raw.pack(), 1e-2)
    assert whitened(q, 1e-2)[0] == pytest.approx(f_raw, rel=1e-12)
    direction = np.random.default_rng(0).standard_normal(q.shape)
    analytic, numeric = _directional(whitened, q, direction, 1e-2)
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_whitening_cuts_the_evaluations_of_an_anisotropic_head_fit():
    """Features whose scales span three decades (as a pretrained model's do): the whitened fit reaches the raw
    fit's optimum in fewer than half of its evaluations."""
    data = blobs(400, layers=1, dim=16, seed=2)
    scaled = Features(data.x * torch.logspace(-1.5, 1.5, 16), data.y)
    fits = {}
    for name in ("raw", "whitened"):
        torch.manual_seed(0)
        featurizer, head = SingleLayer(1, 16).double(), LinearHead(16, 4).double()
        raw = LinearObjective(featurizer, head, scaled.x, scaled.y)
        objective = raw if name == "raw" else raw.head_problem(1e-3)
        result = LBFGSProbe()._minimize(objective, 1e-3)
        fits[name] = (result.nfev, head.linear.weight.detach().clone(), raw(raw.pack(), 1e-3)[0])
    assert fits["whitened"][0] < fits["raw"][0] / 2
    assert fits["whitened"][2] <= fits["raw"][2] + 1e-10
    torch.testing.assert_close(
        fits["whitened"][1] - fits["whitened"][1].mean(0),
        fits["raw"][1] - fits["raw"][1].mean(0),
        atol=1e-4,
        rtol=0,
    )
