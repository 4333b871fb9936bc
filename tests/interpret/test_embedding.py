import numpy as np

from asr_transfer.interpret.embedding import project, silhouette, write_map


def _clusters(seed=0):
    """Clips whose embedding clusters by label (strong) and not by speaker (random)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 15)
    speakers = rng.integers(0, 3, size=len(labels))
    x = 5.0 * np.eye(4)[labels] @ rng.normal(size=(4, 16)) + rng.normal(size=(len(labels), 16))
    return x, labels, speakers


def test_embedding_map_seeds_reproduce():
    x, _, _ = _clusters()
    a, b = project(x, seed=3), project(x, seed=3)
    assert a.shape == (60, 2)
    np.testing.assert_array_equal(a, b)


def test_silhouette_tells_label_clustering_from_speaker_clustering(tmp_path):
    x, labels, speakers = _clusters()
    assert silhouette(x, labels) > 0.5
    assert abs(silhouette(x, speakers)) < 0.1
    assert silhouette(x, np.zeros(60)) is None  # one group: undefined
    scores = write_map(tmp_path / "map.png", x, {"label": labels, "speaker": speakers}, "layer 3")
    assert scores["silhouette_label"] > 0.5
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
