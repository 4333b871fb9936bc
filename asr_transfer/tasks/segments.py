"""Segments and frames: frame targets at a backbone's frame rate, smoothing and segment decoding,
event-based F1 with onset/offset tolerance, and diarisation error (pyannote.metrics).

A segment is ``(start, end, label)`` in seconds. Frame ``i`` of a backbone that emits one frame per
``hop`` seconds covers ``[i hop, (i + 1) hop)`` and takes the label of the segment holding its centre
``(i + 0.5) hop``; unlabelled time is the background class (id 0).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import median_filter
from scipy.optimize import linear_sum_assignment
from torch import Tensor

Segment = tuple[float, float, str]


def frame_targets(segments: Tensor, num_frames: int, hop: float) -> Tensor:
    """segments: (n, 3) rows (start s, end s, class id) -> (num_frames,) class ids (0: background)."""
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) * hop
    out = torch.zeros(num_frames, dtype=torch.long)
    for start, end, label in segments.double().tolist():
        out[(centres >= start) & (centres < end)] = int(label)
    return out


def smooth(probs: np.ndarray, median_frames: int) -> np.ndarray:
    """Median filter of each class's probability over time (probs: (frames, classes)), then argmax."""
    if median_frames > 1:
        probs = median_filter(probs, size=(median_frames, 1), mode="nearest")
    return probs.argmax(-1)


def decode(frames: np.ndarray, hop: float, labels: list[str], min_duration: float = 0.0) -> list[Segment]:
    """Runs of one non-background class as segments; runs shorter than ``min_duration`` seconds are dropped."""
    out, start = [], 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] != frames[start]:
            if frames[start] != 0 and (i - start) * hop >= min_duration - 1e-9:
                out.append((round(start * hop, 6), round(i * hop, 6), labels[int(frames[start])]))
            start = i
    return out


def event_counts(
    ref: list[Segment],
    hyp: list[Segment],
    onset: float = 0.2,
    offset: float = 0.2,
    offset_fraction: float = 0.2,
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of event-based matching as DCASE's sed_eval
    scores it: a hypothesis matches a reference of the same label when their onsets differ by at most
    ``onset`` s and their offsets by at most ``max(offset, offset_fraction * reference length)``; each
    event matches at most once (a maximum bipartite matching)."""
    if not ref or not hyp:
        return 0, len(hyp), len(ref)
    ok = np.zeros((len(ref), len(hyp)), dtype=bool)
    for i, (rs, re, rl) in enumerate(ref):
        tol = max(offset, offset_fraction * (re - rs))
        for j, (hs, he, hl) in enumerate(hyp):
            ok[i, j] = rl == hl and abs(hs - rs) <= onset + 1e-9 and abs(he - re) <= tol + 1e-9
    rows, cols = linear_sum_assignment(-ok.astype(float))
    tp = int(ok[rows, cols].sum())
    return tp, len(hyp) - tp, len(ref) - tp


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(2 * tp + fp + fn, 1)


def frame_counts(frames: np.ndarray, targets: np.ndarray, num_classes: int) -> list[list[int]]:
    """[true positives, false positives, false negatives] per class of one clip's decoded frames."""
    hit = frames == targets
    tp = np.bincount(targets[hit], minlength=num_classes)
    fp = np.bincount(frames[~hit], minlength=num_classes)
    fn = np.bincount(targets[~hit], minlength=num_classes)
    return [tp.tolist(), fp.tolist(), fn.tolist()]


def macro_f1_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes that occur (as reference or prediction) of counts summed over clips:
    arrays (..., clips, classes) -> (...), as torchmetrics' macro F1 averages."""
    tp, fp, fn = tp.sum(-2), fp.sum(-2), fn.sum(-2)
    support = 2 * tp + fp + fn
    seen = support > 0
    per_class = np.where(seen, 2 * tp / np.maximum(support, 1), 0.0)
    return per_class.sum(-1) / np.maximum(seen.sum(-1), 1)


def diarization_error_rate(pairs: list[tuple[list[Segment], list[Segment]]]) -> float:
    """DER over clips (pyannote.metrics, no collar, overlaps scored): labels are speakers, and the
    best one-to-one mapping of hypothesis to reference labels is found per clip."""
    from pyannote.core import Annotation
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate()
    for ref, hyp in pairs:
        r, h = Annotation(), Annotation()
        for k, (s, e, lab) in enumerate(ref):
            r[Span(s, e), k] = lab
        for k, (s, e, lab) in enumerate(hyp):
            h[Span(s, e), k] = lab
        metric(r, h)
    return float(abs(metric))
