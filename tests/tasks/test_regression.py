"""task=regression: the ridge probe against scikit-learn's Ridge (alpha chosen on val), metrics against
scipy, bad targets named by manifest and line, the scale kept in the checkpoint, and train -> eval ->
predict agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import Ridge

from asr_transfer.data.manifest import read_manifest
from asr_transfer.featurizers import SingleLayer
from asr_transfer.heads import LinearHead
from asr_transfer.probe.lbfgs import Features, LBFGSProbe
from asr_transfer.probe.objectives import squared_error
from asr_transfer.tasks.regression import RealTargets
from tests.tasks.runs import best_checkpoint, eval_run, predict_test_clips, read_test_rows, train_run


def linear_data(n: int, seed: int, outputs: int = 2) -> Features:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 5, generator=g)
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0, 0.3], [0.2, 0.0, 1.0, -1.0, 0.0]][:outputs])
    y = 10 + 3 * x[:, 1] @ w.T + 2.0 * torch.randn(n, outputs, generator=g)  # off-centre, scaled targets
    return Features(x, y)


def test_ridge_probe_equals_sklearn_ridge_with_alpha_chosen_on_val():
    train, val = linear_data(80, 0), linear_data(60, 1)
    mean, std = train.y.mean(0), train.y.std(0, unbiased=False)
    featurizer, head = SingleLayer(2, 5, layer=1), LinearHead(5, 2, input_norm=False)
    grid = [1e-3, 1e-1, 1.0, 10.0]
    result = LBFGSProbe(l2_grid=grid).fit(featurizer, head, Features(train.x[:, [1]], train.y),
                                          Features(val.x[:, [1]], val.y), squared_error(mean, std))  # fmt: skip
    # the same choice by hand with scikit-learn: Ridge(alpha = l2 * n / 2) on the raw targets
    refs = {l2: Ridge(alpha=l2 * 80 / 2).fit(train.x[:, 1], train.y) for l2 in grid}
    val_mse = {l2: float(((r.predict(val.x[:, 1]) - val.y.numpy()) ** 2).mean()) for l2, r in refs.items()}
    assert result.l2 == min(val_mse, key=val_mse.get)
    for row in result.table:
        assert -row["val/neg_mse"] == pytest.approx(val_mse[row["l2"]], rel=1e-6)
    with torch.no_grad():
        ours = head(featurizer(val.x[:, [1]].transpose(0, 1))) * std + mean
    np.testing.assert_allclose(ours.numpy(), refs[result.l2].predict(val.x[:, 1]), atol=1e-4)


def test_bad_targets_name_manifest_line_and_field(tmp_path):
    rows = [
        {"audio_filepath": f"{i}.wav", "target": t}
        for i, t in enumerate((1.0, 3.0, float("nan"), "x", [1.0, 2.0]))
    ]
    rows.append({"audio_filepath": "a.wav"})
    text = "".join(json.dumps(r) + "\n" for r in rows)  # json writes NaN as the bare word NaN
    (tmp_path / "train.jsonl").write_text(text)
    targets = RealTargets()
    faults = targets.fit({"train": read_manifest(tmp_path / "train.jsonl")})
    assert [f.line for f in faults] == [3, 4, 5, 6] and all(f.field == "target" for f in faults)
    assert "not finite" in str(faults[0]) and "2 value(s)" in str(faults[2]) and "missing" in str(faults[3])
    assert targets.mean == [2.0] and targets.std == [1.0]


def test_probe_run_eval_and_predict_agree(tmp_path, tone_corpus):
    run, metrics = train_run(tmp_path, tone_corpus, "regression", "probe.l2_grid=[1e-4,1e-2]")
    rows = read_test_rows(run)
    y = np.array([r["target"][0] for r in rows.values()])
    p = np.array([r["predicted"][0] for r in rows.values()])
    assert metrics["test/mae"] == pytest.approx(np.abs(p - y).mean(), abs=1e-5)
    assert metrics["test/mse"] == pytest.approx(((p - y) ** 2).mean(), abs=1e-5)
    assert metrics["test/pearson"] == pytest.approx(pearsonr(p, y).statistic, abs=1e-4)
    assert metrics["test/spearman"] == pytest.approx(spearmanr(p, y).statistic, abs=1e-4)
    assert metrics["test/pearson"] > 0.9  # the tone's frequency is easy to read from the features
    ckpt = best_checkpoint(run)
    state = torch.load(ckpt, weights_only=True)
    train_y = [json.loads(x)["target"] for x in tone_corpus["train"].read_text().splitlines()]
    assert state["asr_transfer"]["target_mean"] == pytest.approx([np.mean(train_y)])
    assert state["state_dict"]["target_std"].tolist() == pytest.approx([np.std(train_y)], rel=1e-5)
    assert eval_run(tmp_path, ckpt)["test/mae"] == pytest.approx(metrics["test/mae"], abs=1e-6)
    predicted = predict_test_clips(tmp_path, ckpt, tone_corpus)
    assert predicted.keys() == rows.keys()
    for path, row in rows.items():
        assert predicted[path]["target"] == pytest.approx(row["predicted"][0], abs=1e-4)


def test_minibatch_run_with_two_outputs(tmp_path, tone_corpus):
    for split in ("train", "val", "test"):  # target: [frequency, duration]
        lines = [json.loads(x) for x in tone_corpus[split].read_text().splitlines()]
        tone_corpus[split].write_text(
            "".join(json.dumps({**r, "target": [r["target"], r["duration"]]}) + "\n" for r in lines)
        )
    run, metrics = train_run(tmp_path, tone_corpus, "regression", "~probe", "trainer.max_epochs=2")
    assert all(np.isfinite(metrics[f"test/{m}"]) for m in ("mse", "mae", "pearson", "spearman"))
    assert len(next(iter(read_test_rows(run).values()))["predicted"]) == 2
