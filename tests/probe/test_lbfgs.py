"""The L-BFGS probe is exact (it equals scikit-learn's logistic regression) and chooses L2 on val only."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from asr_transfer.featurizers import SingleLayer, WeightedSum
from asr_transfer.heads import LinearHead
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from asr_transfer.probe.lbfgs import Features, LBFGSProbe
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides


def blobs(n: int, layers: int = 3, dim: int = 8, classes: int = 4, seed: int = 0) -> Features:
    """Overlapping Gaussian classes (not separable, so the regularised optimum is finite and unique)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=g)
    x = centres[y].unsqueeze(1) + 1.5 * torch.randn(n, layers, dim, generator=g)
    return Features(x, y)


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_lbfgs_equals_sklearn_logistic_regression(l2):
    featurizer, head = SingleLayer(3, 8, layer=2), LinearHead(8, 4, input_norm=True)
    full = blobs(200)
    data = Features(full.x[:, featurizer.layers], full.y)  # what the features stage stores: layer 2 only
    LBFGSProbe(l2_grid=[l2]).fit(featurizer, head, data, None)
    # the same features the head's linear layer sees: layer 2, layer-normed (identity affine)
    x = torch.nn.functional.layer_norm(full.x[:, 2], (8,)).double().numpy()
    ref = LogisticRegression(C=1.0 / (l2 * len(data.y)), tol=1e-12, max_iter=10_000).fit(x, data.y.numpy())
    w, b = head.linear.weight.detach().double().numpy(), head.linear.bias.detach().double().numpy()
    # tolerance: both solvers stop at a gradient norm near 1e-9; the state agrees to 1e-4 absolute
    np.testing.assert_allclose(w, ref.coef_, atol=1e-4)
    # the intercept is unique only up to a shared constant (softmax is shift-invariant)
    np.testing.assert_allclose(b - b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-4)
    with torch.no_grad():
        probs = torch.softmax(head(featurizer(data.x.transpose(0, 1))), -1).double().numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=1e-5)


def test_weighted_sum_is_fitted_with_the_head():
    data = blobs(120, seed=1)
    data.x[:, 0] = torch.randn_like(data.x[:, 0])  # layer 0 carries no class information
    featurizer, head = WeightedSum(3, 8), LinearHead(8, 4)
    result = LBFGSProbe(l2_grid=[1e-2]).fit(featurizer, head, data, None)
    w = featurizer.weights().detach()
    assert w[0] < 1 / 3 < max(w[1], w[2])  # the uninformative layer loses weight
    assert result.table[0]["iterations"] > 1 and featurizer.logits.dtype == torch.float32


def test_l2_chosen_on_val_and_reported_per_grid_value():
    train_set, val = blobs(60, seed=2), blobs(400, seed=3)
    probe = LBFGSProbe(l2_grid=[1e-5, 1e-2, 10.0])
    result = probe.fit(SingleLayer(3, 8), LinearHead(8, 4), train_set, val)
    assert [r["l2"] for r in result.table] == [10.0, 1e-2, 1e-5]  # the path: strongest first
    best = max(result.table, key=lambda r: (r["val/acc"], -r["val/loss"]))
    assert result.l2 == best["l2"]
    # strong L2 cannot fit the training set as well as weak L2
    assert result.table[2]["train/acc"] >= result.table[0]["train/acc"]


def test_several_l2_without_val_is_an_error():
    with pytest.raises(ValueError, match="probe.l2_grid"):
        LBFGSProbe(l2_grid=[1e-3, 1e-2]).fit(SingleLayer(3, 8), LinearHead(8, 4), blobs(20), None)


def _run(tmp_path, corpus, name, test_manifest):
    out = tmp_path / name
    overrides = [*tone_overrides({**corpus, "test": test_manifest}, tmp_path / "cache"), *TINY_WHISPER]
    cfg = compose_train([*overrides, "probe=lbfgs", "probe.l2_grid=[1e-4,1e-2,1.0]"], out)
    train(cfg)
    return out


def _grid(run_dir) -> list[dict]:
    """probe.csv without its wall-clock column."""
    with open(run_dir / "probe.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_pipeline_checkpoint_and_test_split_never_chooses_l2(tmp_path, tone_corpus):
    """Two runs that differ only in their test split choose the same L2 from identical val scores."""
    a = _run(tmp_path, tone_corpus, "a", tone_corpus["test"])
    b = _run(tmp_path, tone_corpus, "b", tone_corpus["train"])  # a different test split
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["probe/l2"] == mb["probe/l2"] and ma["val/acc"] == mb["val/acc"]
    assert _grid(a) == _grid(b)  # every grid value's fit and val scores, bit for bit
    assert ma["test/acc"] != mb["test/acc"] or ma["test/loss"] != pytest.approx(mb["test/loss"])
    ckpt = next((a / "checkpoints").glob("best-lbfgs-*.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    assert state["asr_transfer"]["labels"] == ["high", "low", "mid"]
    assert (a / "test_predictions.jsonl").is_file()
    # eval.py rebuilds the task from the checkpoint alone and reproduces the run's test metrics
    ecfg = compose_train([f"ckpt_path={ckpt}", "+trainer.enable_progress_bar=false"], tmp_path / "e", "eval")
    assert evaluate(ecfg)["test/acc"] == ma["test/acc"]


class _ThreadsSeen(SingleLayer):
    """A featurizer that records the torch thread count each time the fit evaluates it."""

    def forward(self, stack):
        self.seen.add(torch.get_num_threads())
        return super().forward(stack)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_fit_runs_on_probe_num_threads_and_restores_the_process_setting(num_threads):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        featurizer = _ThreadsSeen(3, 8)
        featurizer.seen = set()
        LBFGSProbe(l2_grid=[1e-2], num_threads=num_threads).fit(featurizer, LinearHead(8, 4), blobs(40), None)
        assert featurizer.seen == {num_threads} and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_thread_count_does_not_change_the_fit():
    fits = []
    for threads in (1, 2):
        featurizer, head = WeightedSum(3, 8), LinearHead(8, 4)
        probe = LBFGSProbe(l2_grid=[1e-2], num_threads=threads, precision="float64")
        probe.fit(featurizer, head, blobs(120, seed=4), None)
        fits.append(torch.cat([featurizer.logits.detach(), head.linear.weight.detach().flatten()]))
    # summation order differs across thread counts; the solve stops at a gradient near 1e-9, and the
    # states agree to 1e-4 (the tolerance of the scikit-learn comparison above)
    torch.testing.assert_close(fits[0], fits[1], atol=1e-4, rtol=0)


def test_num_threads_must_be_positive():
    with pytest.raises(ValueError, match="probe.num_threads"):
        LBFGSProbe(num_threads=0)
