"""Verification trials and their scoring: trial lists, cosine scores, adaptive s-norm, EER and minDCF.

A trials file has one trial per line, ``enroll test target`` (whitespace, comma or tab separated;
``target`` is 1/0 or true/false or target/nontarget), clips named by audio path (relative to the
file's folder, or absolute). Without one, every pair of the split's clips is a trial (target when
both have the same ``speaker``).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import binary_roc

from asr_transfer.data.manifest import Entry, ManifestError

TARGET = {"1": True, "true": True, "target": True, "0": False, "false": False, "nontarget": False}


def all_pairs(entries: list[Entry]) -> tuple[Tensor, Tensor, Tensor]:
    """(enroll index, test index, is target) over every unordered pair of clips with a speaker."""
    idx = [i for i, e in enumerate(entries) if e.speaker is not None]
    pairs = list(itertools.combinations(idx, 2))
    if not pairs:
        raise ValueError("fewer than two clips with a speaker: no trials to score (give a trials file)")
    a, b = (torch.tensor(x) for x in zip(*pairs))
    same = torch.tensor([entries[i].speaker == entries[j].speaker for i, j in pairs])
    return a, b, same


def read_trials(
    path: str | Path, entries: list[Entry], skip: bool = False
) -> tuple[Tensor, Tensor, Tensor, list]:
    """(enroll index, test index, is target, faults) of a trials file against the split's ``entries``.
    A fault (a clip not in the split, a malformed line) names the file and line; ``skip=False``
    raises the first, ``skip=True`` leaves those trials out and returns them."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, None, "trials file not found (check task.trials)")
    where = {os.path.normpath(e.audio_filepath): i for i, e in enumerate(entries)}
    base = path.resolve().parent
    rows, faults = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = [c for c in re.split(r"[\s,]+", line.strip()) if c]
        if [c.lower() for c in cells] == ["enroll", "test", "target"]:
            continue  # a header row
        try:
            if len(cells) != 3 or cells[2].lower() not in TARGET:
                raise ManifestError(path, n, f"expected 'enroll test target' (target 1/0), got {line!r}")
            ids = []
            for name in cells[:2]:
                full = os.path.normpath(name if os.path.isabs(name) else base / name)
                if full not in where:
                    raise ManifestError(path, n, f"clip {name!r} is not in this split's manifest")
                ids.append(where[full])
            rows.append((*ids, TARGET[cells[2].lower()]))
        except ManifestError as e:
            if not skip:
                raise
            faults.append(e)
    if not rows:
        raise ManifestError(path, None, "no usable trials in this file")
    a, b, t = zip(*rows)
    return torch.tensor(a), torch.tensor(b), torch.tensor(t), faults


def cosine_scores(emb: Tensor, enroll: Tensor, test: Tensor) -> Tensor:
    e = F.normalize(emb.float(), dim=-1)
    return (e[enroll] * e[test]).sum(-1)


def adaptive_snorm(emb: Tensor, cohort: Tensor, enroll: Tensor, test: Tensor, top_k: int) -> Tensor:
    """Adaptive symmetric score normalisation (Matejka et al. 2017): each side's score is standardised by
    the mean/std of its ``top_k`` highest cosine scores against the cohort, and the two are averaged."""
    e, c = F.normalize(emb.float(), dim=-1), F.normalize(cohort.float(), dim=-1)
    top = (e @ c.T).topk(min(top_k, len(c)), dim=-1).values  # (clips, k)
    mu, sd = top.mean(-1), top.std(-1).clamp(min=1e-6)
    raw = cosine_scores(emb, enroll, test)
    return 0.5 * ((raw - mu[enroll]) / sd[enroll] + (raw - mu[test]) / sd[test])


def error_rates(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(false-alarm rate, miss rate) at every threshold of the ROC (torchmetrics)."""
    fpr, tpr, _ = binary_roc(scores.float(), targets.long())
    return fpr.double(), 1 - tpr.double()


def eer(scores: Tensor, targets: Tensor) -> float:
    """Equal error rate: where the miss and false-alarm rates cross, linearly interpolated between the
    two ROC points around the crossing."""
    fa, miss = error_rates(scores, targets)
    k = int(torch.nonzero(miss <= fa)[0])  # first point where misses no longer exceed false alarms
    if k == 0:
        return float(fa[0])
    d0, d1 = float(miss[k - 1] - fa[k - 1]), float(miss[k] - fa[k])
    w = d0 / (d0 - d1)
    return float((1 - w) * fa[k - 1] + w * fa[k])


def min_dcf(
    scores: Tensor, targets: Tensor, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Minimum normalised detection cost over thresholds (NIST SRE): ``(c_miss p miss + c_fa (1-p) fa)
    / min(c_miss p, c_fa (1-p))``."""
    fa, miss = error_rates(scores, targets)
    cost = c_miss * p_target * miss + c_fa * (1 - p_target) * fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def verification_metrics(scores: Tensor, targets: Tensor, p_targets=(0.01, 0.05)) -> dict[str, float]:
    if targets.all() or not targets.any():
        kind = "target" if targets.all() else "non-target"
        raise ValueError(
            f"every one of the {len(targets)} trials is a {kind} trial: EER needs both kinds; put clips of "
            "several speakers in the split (e.g. data.corpus.mix_eval_speakers=true) or give task.trials"
        )
    out = {"eer": eer(scores, targets)}
    out.update({f"min_dcf_{p:g}": min_dcf(scores, targets, p) for p in p_targets})
    return out
