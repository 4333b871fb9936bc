import torch

from asr_transfer.interpret.cka import layer_cka, layer_of, linear_cka, weight_change


def reference_cka(x, y):
    """The kernel form: HSIC of centred linear kernels (Kornblith et al. 2019, eq. 3)."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((k * l_).sum() / ((k * k).sum().sqrt() * (l_ * l_).sum().sqrt()))


def test_cka_matches_the_kernel_form_and_is_one_for_identical_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=g)
    y = x @ torch.randn(8, 5, generator=g) + 0.3 * torch.randn(60, 5, generator=g)
    assert abs(linear_cka(x, y) - reference_cka(x, y)) < 1e-9
    assert abs(linear_cka(x, x) - 1.0) < 1e-9


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(6, 6, generator=g, dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    base = linear_cka(x, y)
    assert abs(linear_cka(x @ q, y) - base) < 1e-9
    assert abs(linear_cka(3.7 * x, 0.2 * y) - base) < 1e-9
    assert abs(linear_cka(x @ q, x) - 1.0) < 1e-9


def test_cka_is_lower_for_a_random_input():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 8, generator=g)
    related = x + 0.1 * torch.randn(200, 8, generator=g)
    unrelated = torch.randn(200, 8, generator=g)
    assert linear_cka(x, related) > 0.95
    assert linear_cka(x, unrelated) < 0.2


def test_layer_cka_ignores_padded_frames():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 10, 4, generator=g)
    b = a.clone()
    b[1, 6:] = 100 * torch.randn(4, 4, generator=g)  # padding differs wildly; valid frames are identical
    lengths = torch.tensor([10, 6])
    assert abs(layer_cka([a, a], [b, a], lengths)[0] - 1.0) < 1e-9


def test_weight_change_is_per_layer_and_relative():
    before = {
        "encoder.layers.0.fc.weight": torch.ones(4, 4),
        "encoder.layers.1.fc.weight": torch.ones(4, 4),
        "encoder.conv.weight": torch.ones(3),
    }
    after = dict(before)
    after["encoder.layers.1.fc.weight"] = 1.5 * torch.ones(4, 4)
    after["encoder.conv.weight"] = torch.zeros(3)  # outside the layers: not reported
    assert layer_of("encoder.layers.11.attn.q.weight") == 11 and layer_of("encoder.conv.weight") is None
    assert weight_change(before, after) == {0: 0.0, 1: 0.5}
