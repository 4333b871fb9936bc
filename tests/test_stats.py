"""asr_transfer/stats.py on synthetic data with known answers: coverage, the paired test against scipy,
equivalence, seed intervals, and the tasks' per-clip metrics against the torchmetrics values they restate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import stats as sps
from torchmetrics.classification import MulticlassF1Score
from torchmetrics.text import CharErrorRate, WordErrorRate

from asr_transfer.stats import (
    Bootstrap,
    macro_f1_metric,
    mean_metric,
    proportion_interval,
    ratio_metric,
    seed_summary,
    tost,
)
from asr_transfer.tasks.classification import ClassificationTask
from asr_transfer.tasks.ctc import CTCTask
from tests.conftest import CONF


@pytest.mark.parametrize("kind", ["mean", "ratio"])
def test_bootstrap_interval_covers_the_true_value_about_95_percent(kind):
    rng = np.random.default_rng(0)
    boot, truth, trials, hits = Bootstrap(resamples=999, seed=1), 0.8, 200, 0
    for _ in range(trials):
        if kind == "mean":  # accuracy of a classifier that is right with probability 0.8
            m = mean_metric(rng.random(120) < truth)
        else:  # WER-like: errors / words with clip lengths 1..9, each word wrong with probability 0.8
            words = rng.integers(1, 10, 120)
            m = ratio_metric(rng.binomial(words, truth), words)
        low, high = boot.interval(m.at, m.n)
        hits += low <= truth <= high
    assert 0.90 <= hits / trials <= 0.99, hits / trials


def test_interval_is_seeded_and_contains_the_estimate():
    m = mean_metric(np.random.default_rng(3).random(80) < 0.7)
    a, b = Bootstrap(999, seed=5).intervals({"acc": m}), Bootstrap(999, seed=5).intervals({"acc": m})
    assert a == b and set(a) == {"test/acc_ci95_low", "test/acc_ci95_high"}
    assert a["test/acc_ci95_low"] < m.value() < a["test/acc_ci95_high"]
    assert Bootstrap(999).intervals({"acc": mean_metric(np.ones(30))}) == {
        "test/acc_ci95_low": 1.0,
        "test/acc_ci95_high": 1.0,
    }  # fmt: skip  every clip right: no spread to resample, the interval is the value


def _mean_diff(x, y, axis=-1):
    return x.mean(axis=axis) - y.mean(axis=axis)


@pytest.mark.parametrize("n", [12, 150])  # 2**12 <= resamples: exact; 150 clips: random permutations
def test_paired_test_matches_scipy_permutation_test(n):
    rng = np.random.default_rng(n)
    a, b = (rng.random(n) < 0.85).astype(float), (rng.random(n) < 0.7).astype(float)
    ours = Bootstrap(resamples=4999, seed=7).paired(mean_metric(a), mean_metric(b))
    ref = sps.permutation_test(
        (a, b), _mean_diff, permutation_type="samples", vectorized=True, n_resamples=4999,
        rng=np.random.default_rng(7),
    )  # fmt: skip
    assert ours["difference"] == pytest.approx(a.mean() - b.mean())
    assert ours["p_value"] == pytest.approx(ref.pvalue, abs=1e-12 if n == 12 else 0.02)
    assert ours["ci_low"] <= ours["difference"] <= ours["ci_high"]


def test_paired_difference_finds_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(11)
    a = (rng.random(300) < 0.9).astype(float)
    worse = np.where(rng.random(300) < 0.15, 0.0, a)  # B loses ~15 % of A's right answers
    gap = Bootstrap(1999).paired(mean_metric(a), mean_metric(worse))
    assert gap["ci_low"] > 0 and gap["p_value"] < 0.01
    same = Bootstrap(1999).paired(mean_metric(a), mean_metric(rng.permutation(a)))
    assert same["ci_low"] < 0 < same["ci_high"] or same["difference"] == 0


def test_tost_accepts_rejects_and_stays_inconclusive():
    rng = np.random.default_rng(2)
    close = tost(0.002 + rng.normal(0, 0.003, 20), margin=0.01)  # tight around +0.2 points
    assert (
        close["equivalent"] and close["p_value"] < 0.05 and -0.01 < close["ci_low"] < close["ci_high"] < 0.01
    )
    far = tost(0.05 + rng.normal(0, 0.003, 20), margin=0.01)  # 5 points apart
    assert not far["equivalent"] and far["p_value"] > 0.5
    noisy = tost([0.05, -0.06, 0.01], margin=0.01)  # 3 seeds with a 5-point spread: inconclusive
    assert not noisy["equivalent"] and noisy["ci_low"] < -0.01 and noisy["ci_high"] > 0.01
    x, y = 0.80 + rng.normal(0, 0.002, 10), 0.801 + rng.normal(0, 0.002, 10)  # unpaired (Welch)
    assert tost(x, y, margin=0.01, paired=False)["equivalent"]
    assert not tost(x, y + 0.03, margin=0.01, paired=False)["equivalent"]


def test_seed_summary_is_the_t_interval():
    v = [0.91, 0.95, 0.88, 0.93]
    s = seed_summary(v)
    half = sps.t.ppf(0.975, 3) * np.std(v, ddof=1) / np.sqrt(4)
    assert (
        s["n"] == 4
        and s["mean"] == pytest.approx(np.mean(v))
        and s["std"] == pytest.approx(np.std(v, ddof=1))
    )
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((np.mean(v) - half, np.mean(v) + half))
    assert np.isnan(seed_summary([0.9])["ci_low"])


def test_classification_clip_metrics_restate_torchmetrics():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 60)
    p = np.where(rng.random(60) < 0.7, y, rng.integers(0, 5, 60))
    rows = [{"index": i, "ref": str(a), "pred": str(b)} for i, (a, b) in enumerate(zip(y, p))]
    m = ClassificationTask.clip_metrics(rows)
    assert m["acc"].value() == pytest.approx(float((y == p).mean()))
    f1 = MulticlassF1Score(5, average="macro")(torch.tensor(p), torch.tensor(y))
    assert m["f1"].value() == pytest.approx(float(f1), abs=1e-6)
    f1_resampled = macro_f1_metric(list(y), list(p)).at(np.array([[0, 0, 1, 2], [3, 4, 5, 5]]))
    assert f1_resampled.shape == (2,)


def test_ctc_clip_metrics_restate_torchmetrics():
    refs = ["one two three", "four", "five six", "seven eight nine", ""]
    hyps = ["one too three", "for four", "five six", "seven nine", "x"]
    rows = [{"index": i, "ref": r, "pred": h} for i, (r, h) in enumerate(zip(refs, hyps))]
    m = CTCTask.clip_metrics(rows[:4])
    assert m["wer"].value() == pytest.approx(float(WordErrorRate()(hyps[:4], refs[:4])))
    assert m["cer"].value() == pytest.approx(float(CharErrorRate()(hyps[:4], refs[:4])))
    assert CTCTask.clip_metrics(rows)["wer"].data[1].tolist() == [3, 1, 2, 3, 0]  # an empty ref: no words


def test_stats_config_builds_the_bootstrap():
    boot = instantiate(OmegaConf.load(CONF / "stats" / "bootstrap.yaml"))
    assert isinstance(boot, Bootstrap) and boot.resamples >= 999


def test_proportion_interval_is_wilsons():
    k, n, z = 45, 50, 1.959963984540054
    p = k / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5,
    )
    assert proportion_interval(k, n) == pytest.approx((centre - half, centre + half))


def test_paired_equivalence_on_clips_accepts_and_rejects():
    rng = np.random.default_rng(8)
    a = (rng.random(2000) < 0.9).astype(float)
    flip = np.zeros(2000)
    flip[rng.choice(2000, 6, replace=False)] = 1  # B differs from A on 6 of 2000 clips: 0.3 points at most
    close = Bootstrap(999).paired(mean_metric(a), mean_metric(np.abs(a - flip)), margin=0.01)
    assert close["equivalence"]["equivalent"] and -0.01 < close["equivalence"]["ci90_low"]
    worse = np.where(rng.random(2000) < 0.06, 0.0, a)  # B loses ~5 points
    far = Bootstrap(999).paired(mean_metric(a), mean_metric(worse), margin=0.01)
    assert not far["equivalence"]["equivalent"] and far["equivalence"]["ci90_low"] > 0.01
    assert "equivalence" not in Bootstrap(999).paired(mean_metric(a), mean_metric(worse))
