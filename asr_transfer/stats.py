"""Intervals and paired comparisons over test clips and seeds, on ``scipy.stats`` (no hand-written
resampling).

A task states each test metric as a :class:`ClipMetric`: per-clip arrays (one entry per test clip) and a
statistic over them. Resampling clips is then indexing those arrays, so one code path gives

- a bootstrap interval for every test metric of a run (:meth:`Bootstrap.intervals`, written to
  ``metrics.json`` as ``test/<metric>_ci95_low`` / ``_ci95_high``),
- the paired difference of two runs on the same clips with its interval and a permutation p-value
  (:meth:`Bootstrap.paired`, ``python -m asr_transfer.compare``),

whatever the metric: a mean of per-clip values (accuracy), a ratio of sums (WER = word errors / reference
words) or a statistic of the whole set (macro-F1). Over seeds (:func:`seed_summary`) and for "within X
points" claims (:func:`tost`) the unit is a run, and the t distribution is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # the interval written to metrics.json; its keys say so (``_ci95_``)


@dataclass(frozen=True)
class ClipMetric:
    """A metric as a function of test clips.

    data: arrays of length n_clips (clip i is entry i of each);
    statistic: ``statistic(*data) -> value``, vectorised: arrays of shape (..., n) give shape (...).
    """

    data: tuple[np.ndarray, ...]
    statistic: Callable[..., np.ndarray]

    @property
    def n(self) -> int:
        return len(self.data[0])

    def value(self) -> float:
        return float(self.statistic(*self.data))

    def at(self, idx: np.ndarray) -> np.ndarray:
        """The metric over the clips ``idx`` (shape (..., n): one resample per row)."""
        return self.statistic(*(a[idx] for a in self.data))


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num.sum(axis=-1) / np.maximum(den.sum(axis=-1), 1)


def mean_metric(values: Sequence[float]) -> ClipMetric:
    """The mean of a per-clip value (accuracy: 1.0 for a correct clip, 0.0 otherwise)."""
    return ClipMetric((np.asarray(values, dtype=float),), _mean)


def ratio_metric(numerators: Sequence[float], denominators: Sequence[float]) -> ClipMetric:
    """A ratio of sums over clips (WER: edit errors / reference words), as torchmetrics computes it."""
    return ClipMetric((np.asarray(numerators, float), np.asarray(denominators, float)), _ratio)


def macro_f1_metric(labels: Sequence, predictions: Sequence) -> ClipMetric:
    """Macro-F1 over the classes that occur (as labels or predictions) in the clips of each resample."""
    classes = {c: i for i, c in enumerate(sorted({*labels, *predictions}, key=str))}
    y = np.array([classes[c] for c in labels])
    p = np.array([classes[c] for c in predictions])

    k = len(classes)

    def f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
        # per (resample, class) counts in one bincount each: key = resample * k + class
        rows = np.arange(int(np.prod(y.shape[:-1])))[:, None] * k
        y2, p2 = y.reshape(-1, y.shape[-1]) + rows, p.reshape(-1, p.shape[-1]) + rows
        size = rows.size * k
        tp = np.bincount(y2.ravel(), weights=(y2 == p2).ravel(), minlength=size)
        support = np.bincount(y2.ravel(), minlength=size) + np.bincount(p2.ravel(), minlength=size)
        tp, support = tp.reshape(-1, k), support.reshape(-1, k)  # support = 2 tp + false pos. + false neg.
        seen = support > 0  # a class absent from a resample does not enter its mean
        per_class = np.where(seen, 2 * tp / np.maximum(support, 1), 0.0)
        return (per_class.sum(-1) / np.maximum(seen.sum(-1), 1)).reshape(y.shape[:-1])

    return ClipMetric((y, p), f1)


@dataclass(frozen=True)
class Bootstrap:
    """Clip-level resampling settings (``conf/stats/bootstrap.yaml``).

    resamples: bootstrap resamples and permutations (scipy's default is 9999);
    seed: the random stream, so a run's intervals are reproducible;
    method: ``percentile`` | ``basic`` | ``BCa`` (``scipy.stats.bootstrap``).
    """

    resamples: int = 9999
    seed: int = 0
    method: str = "percentile"

    def interval(self, fn: Callable[[np.ndarray], np.ndarray], n: int, level: float = LEVEL):
        """Bootstrap interval of ``fn(clip indices)`` over n clips resampled with replacement."""
        if n < 2:
            return math.nan, math.nan
        with warnings.catch_warnings():  # every resample equal (all clips right): handled below
            warnings.simplefilter("ignore", (stats.DegenerateDataWarning, RuntimeWarning))
            res = stats.bootstrap(
                (np.arange(n),), lambda idx, axis=-1: fn(idx),  # scipy passes axis; resamples are rows
                n_resamples=self.resamples, confidence_level=level, method=self.method,
                vectorized=True, batch=max(1, 2_000_000 // n), rng=np.random.default_rng(self.seed),
            )  # fmt: skip
        low, high = res.confidence_interval
        value = float(fn(np.arange(n)))
        if not (math.isfinite(low) and math.isfinite(high)):  # every resample equal (e.g. all clips right)
            return value, value
        return float(low), float(high)

    def intervals(self, metrics: dict[str, ClipMetric], prefix: str = "test/") -> dict[str, float]:
        """``{prefix}<name>_ci95_low`` / ``_ci95_high`` for every metric (the flat metrics.json keys)."""
        out = {}
        for name, m in metrics.items():
            low, high = self.interval(m.at, m.n)
            out[f"{prefix}{name}_ci95_low"], out[f"{prefix}{name}_ci95_high"] = low, high
        return out

    def paired(self, a: ClipMetric, b: ClipMetric, level: float = LEVEL, margin: float | None = None) -> dict:
        """``a - b`` on the same clips (entry i of both is clip i): the difference, its paired bootstrap
        interval, and the two-sided p-value of a paired permutation test (``scipy.stats.permutation_test``
        swapping the two runs' outcomes clip by clip; exact when 2**n <= resamples). ``margin``: also the
        equivalence check, whether the 90 % paired interval lies inside (-margin, margin) (the interval form
        of two one-sided tests at 5 %)."""
        if a.n != b.n:
            raise ValueError(f"paired comparison needs the same clips: {a.n} vs {b.n}")
        n = a.n
        # one table of 2n clip outcomes: A's clips are rows 0..n-1, B's n..2n-1
        both = ClipMetric(tuple(np.concatenate([x, y]) for x, y in zip(a.data, b.data)), a.statistic)

        def diff(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
            return both.at(ia) - both.at(ib)

        def same_clips(i: np.ndarray) -> np.ndarray:
            return diff(i, i + n)

        low, high = self.interval(same_clips, n, level)
        perm = stats.permutation_test(
            (np.arange(n), np.arange(n, 2 * n)), diff, permutation_type="samples", vectorized=True,
            n_resamples=self.resamples, batch=max(1, 2_000_000 // n), rng=np.random.default_rng(self.seed),
        )  # fmt: skip
        out = {
            "a": a.value(), "b": b.value(), "difference": float(same_clips(np.arange(n))),
            "ci_low": low, "ci_high": high, "level": level, "p_value": float(perm.pvalue), "n_clips": n,
        }  # fmt: skip
        if margin is not None:
            low90, high90 = self.interval(same_clips, n, 0.90)
            out["equivalence"] = {"margin": margin, "ci90_low": low90, "ci90_high": high90,
                                  "equivalent": bool(-margin < low90 and high90 < margin)}  # fmt: skip
        return out


def tost(x: Sequence[float], y: Sequence[float] | None = None, margin: float = 0.01, paired: bool = True,
         alpha: float = 0.05) -> dict[str, float | bool]:  # fmt: skip
    """Two one-sided t-tests for ``|mean(x - y)| < margin`` ("within one point": margin 0.01 on a 0-1 scale).

    paired: x[i] and y[i] share a unit (seed, clip); else Welch's unpaired test. y None: x holds the
    differences. Equivalence is shown when both one-sided nulls (difference <= -margin, >= margin) are
    rejected at ``alpha``, i.e. the (1 - 2 alpha) interval lies inside (-margin, margin); the p-value is the
    larger of the two. ``equivalent`` False means inconclusive (or different), never "shown equal"."""
    x = np.asarray(x, float)
    if y is None or paired:
        d = x if y is None else x - np.asarray(y, float)
        lower = stats.ttest_1samp(d, -margin, alternative="greater")
        upper = stats.ttest_1samp(d, margin, alternative="less")
        diff = float(d.mean())
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(1 - 2 * alpha)
    else:
        y = np.asarray(y, float)
        lower = stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater")
        upper = stats.ttest_ind(x - margin, y, equal_var=False, alternative="less")
        diff = float(x.mean() - y.mean())
        ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(1 - 2 * alpha)
    p = float(max(lower.pvalue, upper.pvalue))
    return {"difference": diff, "margin": margin, "p_value": p, "equivalent": bool(p < alpha),
            "ci_low": float(ci.low), "ci_high": float(ci.high), "ci_level": 1 - 2 * alpha}  # fmt: skip


def seed_summary(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Mean, sample std and the t-interval of the mean over runs (seeds, draws)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if len(v) == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if len(v) == 1:
        return {"n": 1, "mean": float(v[0]), "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if np.ptp(v) == 0:  # scipy's t-interval is nan for equal values
        low = high = float(v[0])
    else:
        ci = stats.ttest_1samp(v, 0.0).confidence_interval(level)
        low, high = float(ci.low), float(ci.high)
    return {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1)), "ci_low": low, "ci_high": high}


def proportion_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson interval of an accuracy known only as a count (a study CSV without per-clip rows)."""
    if n <= 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(round(successes)), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)
