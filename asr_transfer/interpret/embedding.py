"""Embedding maps: a seeded 2-D projection of pooled clip embeddings, coloured by label and by speaker,
with a silhouette score for each, so "this layer clusters by speaker, not by digit" is a number as
well as a picture (scikit-learn's t-SNE and silhouette; PCA first keeps t-SNE fast on wide layers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr_transfer.utils.atomic import atomic_path


def project(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """x: (clips, dim) -> (clips, 2); the same seed gives the same map."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 4:
        raise ValueError(f"an embedding map needs at least 4 clips, got {len(x)}")
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if x.shape[1] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    tsne = TSNE(2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca", random_state=seed)
    return tsne.fit_transform(x)


def silhouette(x: np.ndarray, groups: Sequence) -> float | None:
    """Silhouette of ``groups`` (labels or speakers) in the embedding space (cosine distance), in [-1, 1];
    None when fewer than 2 groups or a group per clip."""
    from sklearn.metrics import silhouette_score

    groups = np.asarray([str(g) for g in groups])
    n = len(set(groups))
    if n < 2 or n >= len(groups):
        return None
    return float(silhouette_score(np.asarray(x, dtype=np.float64), groups, metric="cosine"))


def map_figure(points: np.ndarray, colourings: dict[str, Sequence], title: str):
    """One scatter per colouring (``{"label": [...], "speaker": [...]}``), its silhouette in the title."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(colourings), 3.8))
    for i, (name, groups) in enumerate(colourings.items()):
        ax = fig.add_subplot(1, len(colourings), i + 1)
        names = sorted({str(g) for g in groups})
        codes = np.asarray([names.index(str(g)) for g in groups])
        ax.scatter(points[:, 0], points[:, 1], c=codes, cmap="tab20", s=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title}: by {name}", fontsize=9)
    fig.tight_layout()
    return fig


def write_map(
    path: str | Path, x: np.ndarray, colourings: dict[str, Sequence], title: str, seed: int = 0
) -> dict:
    """Project ``x``, draw ``path`` (PNG); returns ``{"silhouette_<name>": score}`` on the full-dimensional
    embeddings (the 2-D map distorts distances; the score does not depend on it)."""
    points = project(x, seed)
    with atomic_path(path, suffix=".png") as tmp:
        map_figure(points, colourings, title).savefig(tmp, dpi=90)
    return {f"silhouette_{name}": silhouette(x, groups) for name, groups in colourings.items()}
