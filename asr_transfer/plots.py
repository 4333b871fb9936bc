"""Figures a transfer run is judged by: the confusion matrix and the weighted-sum layer weights.

Shared by the W&B callback (asr_transfer/loggers.py), the notebook and the experiments. Only
matplotlib's object API is used (no pyplot state), so figures are safe to build in a training process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def confusion_figure(matrix, labels: Sequence[str], title: str = "test confusion matrix") -> Figure:
    """matrix: (classes, classes) counts, rows = true label, columns = prediction."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {m.shape} does not match {len(labels)} labels")
    size = max(3.5, 0.45 * len(labels) + 1.5)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot()
    rows = m.sum(1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)  # colour by recall, print counts
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {np.trace(m) / max(m.sum(), 1):.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return fig


def per_class_rows(matrix, labels: Sequence[str]) -> list[dict]:
    """One row per class: support, correct, recall, precision, F1 (from the confusion counts)."""
    m = np.asarray(matrix, dtype=float)
    rows = []
    for i, label in enumerate(labels):
        tp, support, predicted = m[i, i], m[i].sum(), m[:, i].sum()
        recall = tp / support if support else 0.0
        precision = tp / predicted if predicted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "label": str(label),
                "support": int(support),
                "correct": int(tp),
                "recall": round(recall, 4),
                "precision": round(precision, 4),
                "f1": round(f1, 4),
            }
        )
    return rows


def layer_weights_figure(weights, title: str = "weighted-sum layer weights") -> Figure:
    """weights: (num_layers,) softmax weights; layer 0 is the pre-transformer state."""
    w = np.asarray(weights, dtype=float)
    fig = Figure(figsize=(max(3.5, 0.35 * len(w) + 1.5), 3.0))
    ax = fig.add_subplot()
    ax.bar(range(len(w)), w, color="tab:blue")
    ax.axhline(1.0 / len(w), color="grey", lw=0.8, ls=":", label="uniform")
    ax.set_xticks(range(len(w)))
    ax.set_xlabel("hidden layer (0 = input to the transformer)")
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
