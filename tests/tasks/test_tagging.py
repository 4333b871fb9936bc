"""task=tagging: mAP and thresholds against scikit-learn, the one-vs-rest probe against scikit-learn's
logistic regression, bad tags named by manifest and line, and train -> eval -> predict agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score
from torchmetrics.classification import MultilabelAveragePrecision

from asr_transfer.data.manifest import read_manifest
from asr_transfer.featurizers import SingleLayer
from asr_transfer.heads import LinearHead
from asr_transfer.probe.lbfgs import Features, LBFGSProbe
from asr_transfer.probe.objectives import ONE_VS_REST
from asr_transfer.tasks.tagging import TagTargets, best_f1_thresholds
from tests.tasks.runs import best_checkpoint, eval_run, predict_test_clips, read_test_rows, train_run


def tagged(n: int, tags: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities that rank positives higher on average (not perfectly), and their multi-hot targets."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, tags, generator=g) < 0.4).float()
    y[0], y[1] = 1.0, 0.0  # every tag has a positive and a negative
    return torch.sigmoid(2 * y - 1 + 1.2 * torch.randn(n, tags, generator=g)), y


def test_map_equals_sklearn_average_precision():
    probs, y = tagged(60)
    ours = MultilabelAveragePrecision(3, average="macro")(probs, y.long())
    assert float(ours) == pytest.approx(
        average_precision_score(y.numpy(), probs.numpy(), average="macro"), abs=1e-6
    )


def test_thresholds_give_the_best_f1_of_any_cut():
    probs, y = tagged(80, seed=1)
    chosen = best_f1_thresholds(probs, y)
    for c in range(3):
        best = max(f1_score(y[:, c], probs[:, c] >= t) for t in probs[:, c].unique())
        assert f1_score(y[:, c], probs[:, c] >= chosen[c]) == pytest.approx(best)
    # a tag never positive on val keeps 0.5
    assert best_f1_thresholds(probs, torch.cat([y[:, :2], torch.zeros(80, 1)], 1))[2] == 0.5


def test_one_vs_rest_probe_equals_sklearn_per_tag():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 2, 6, generator=g)
    y = ((x[:, 1, :3] + 1.5 * torch.randn(150, 3, generator=g)) > 0).float()
    featurizer, head, l2 = SingleLayer(2, 6, layer=1), LinearHead(6, 3, input_norm=False), 1e-2
    data = Features(x[:, featurizer.layers], y)
    LBFGSProbe(l2_grid=[l2]).fit(featurizer, head, data, None, ONE_VS_REST)
    for c in range(3):
        ref = LogisticRegression(C=1 / (l2 * 150), tol=1e-12, max_iter=10_000).fit(x[:, 1].double(), y[:, c])
        np.testing.assert_allclose(head.linear.weight[c].detach().double(), ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(float(head.linear.bias[c].detach()), ref.intercept_[0], atol=1e-4)


def test_bad_tags_name_manifest_line_and_field(tmp_path):
    rows = [{"audio_filepath": "a.wav", "labels": t} for t in (["x"], ["x", "y"], [], "x", ["", "x"])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "val.jsonl").write_text(json.dumps({"audio_filepath": "b.wav", "labels": ["z"]}) + "\n")
    entries = {s: read_manifest(tmp_path / f"{s}.jsonl") for s in ("train", "val")}
    targets = TagTargets()
    faults = targets.fit(entries)
    where = sorted((f.path.rsplit("/", 1)[-1], f.line) for f in faults)
    assert where == [("train.jsonl", 3), ("train.jsonl", 4), ("train.jsonl", 5), ("val.jsonl", 1)]
    assert all("field 'labels'" in str(f) for f in faults) and "never occur in training" in str(faults[-1])
    assert targets.labels == ["x", "y"] and targets.encode(entries["train"][1]).tolist() == [1.0, 1.0]


def test_probe_run_eval_and_predict_agree(tmp_path, tone_corpus):
    run, metrics = train_run(tmp_path, tone_corpus, "tagging", "probe.l2_grid=[1e-3,1e-1]")
    assert {"test/map", "test/f1_micro", "test/f1_macro", "val/map", "probe/l2"} <= set(metrics)
    rows = read_test_rows(run)
    tags = ["high", "low", "mid", "wide"]
    y = np.array([[t in r["labels"] for t in tags] for r in rows.values()])
    p = np.array([r["probs"] for r in rows.values()])
    assert metrics["test/map"] == pytest.approx(average_precision_score(y, p, average="macro"), abs=1e-5)
    ckpt = best_checkpoint(run)
    state = torch.load(ckpt, weights_only=True)
    assert state["asr_transfer"]["labels"] == tags and state["state_dict"]["thresholds"].shape == (4,)
    assert eval_run(tmp_path, ckpt)["test/map"] == pytest.approx(metrics["test/map"], abs=1e-6)
    predicted = predict_test_clips(tmp_path, ckpt, tone_corpus)
    assert predicted.keys() == rows.keys()
    for path, row in rows.items():
        probs = [predicted[path][f"prob_{t}"] for t in tags]
        np.testing.assert_allclose(probs, row["probs"], atol=1e-4)
        assert predicted[path]["labels"].split() == row["predicted"]


def test_minibatch_run_and_bad_rows_skipped(tmp_path, tone_corpus):
    train_rows = tone_corpus["train"].read_text().splitlines()
    bad = [
        json.dumps({**json.loads(train_rows[0]), "labels": []}),
        json.dumps({**json.loads(train_rows[1]), "labels": None}),
    ]
    # beside the original: audio paths are relative to the manifest's folder
    corpus = {**tone_corpus, "train": tone_corpus["train"].parent / "bad_train.jsonl"}
    corpus["train"].write_text("\n".join(train_rows + bad) + "\n")
    with pytest.raises(ValueError, match=rf"bad_train.jsonl, line {len(train_rows) + 1}, field 'labels'"):
        train_run(tmp_path, corpus, "tagging", name="strict")
    run, metrics = train_run(
        tmp_path, corpus, "tagging", "~probe", "trainer.max_epochs=2", "data.on_bad_audio=skip", name="skip"
    )
    assert np.isfinite(metrics["test/map"]) and metrics["epochs"] == 2
    skipped = [json.loads(x) for x in (run / "bad_audio.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in skipped) == [len(train_rows) + 1, len(train_rows) + 2]
    assert {r["reason"] for r in skipped} == {"bad_target"}


def test_check_data_names_bad_tags_and_follows_the_policy(tmp_path, tone_corpus):
    from asr_transfer.pipeline.check_data import check_data
    from asr_transfer.utils.jsonl import read_jsonl as load_report
    from tests.conftest import TINY_WHISPER, compose_train, tone_overrides

    rows = tone_corpus["val"].read_text().splitlines()
    tone_corpus["val"].write_text(
        "\n".join([*rows, json.dumps({**json.loads(rows[0]), "labels": ["nine"]})]) + "\n"
    )
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "task=tagging", "~features"]
    assert check_data(compose_train(over, tmp_path / "strict")) == 1
    report = load_report(tmp_path / "strict" / "data_check.jsonl")
    bad = [r for r in report if r["reason"] == "bad_target"]
    assert [(r["severity"], r["line"], r["split"]) for r in bad] == [("error", len(rows) + 1, "val")]
    assert "never occur in training" in bad[0]["detail"]
    assert check_data(compose_train([*over, "data.on_bad_audio=skip"], tmp_path / "skip")) == 0
    report = load_report(tmp_path / "skip" / "data_check.jsonl")
    assert [r["severity"] for r in report if r["reason"] == "bad_target"] == ["skipped"]
