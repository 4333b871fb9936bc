"""``python -m asr_transfer.compare`` on real (tiny) runs: intervals in metrics.json, the paired
difference of two runs with its interval, the refusal on different test clips, seed aggregation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from asr_transfer.compare import main
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides


def _run(tmp_path, corpus, name, *extra):
    out = tmp_path / name
    cfg = compose_train([*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER, *extra], out)
    train(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # what Hydra writes for a CLI run
    return out


@pytest.fixture
def two_runs(tmp_path, tone_corpus):
    # a weak run (the last layer of a random tiny model) and the layer-weighted probe, same test clips
    return (
        _run(tmp_path, tone_corpus, "a", "featurizer=weighted_sum", "stats.resamples=999"),
        _run(tmp_path, tone_corpus, "b", "featurizer=last", "stats.resamples=999"),
    )


def test_runs_write_intervals_and_compare_writes_the_difference(tmp_path, two_runs, capsys):
    a, b = two_runs
    ma = json.loads((a / "metrics.json").read_text())
    for m in ("acc", "f1"):
        assert ma[f"test/{m}_ci95_low"] <= ma[f"test/{m}"] + 1e-9 <= ma[f"test/{m}_ci95_high"] + 2e-9
    out = tmp_path / "cmp.json"
    main([str(a), str(b), "--margin", "0.01", "--resamples", "999", "--out", str(out)])
    res = json.loads(out.read_text())
    mb = json.loads((b / "metrics.json").read_text())
    acc = res["metrics"]["test/acc"]
    assert res["n_clips"] == 12 and set(res["metrics"]) == {"test/acc", "test/f1"}
    assert acc["a"] == pytest.approx(ma["test/acc"]) and acc["b"] == pytest.approx(mb["test/acc"])
    assert acc["difference"] == pytest.approx(ma["test/acc"] - mb["test/acc"])
    assert acc["ci_low"] <= acc["difference"] <= acc["ci_high"] and 0 < acc["p_value"] <= 1
    assert acc["equivalence"]["margin"] == 0.01 and isinstance(acc["equivalence"]["equivalent"], bool)
    # 12 clips: the interval of a difference is wide, never narrower than one clip
    assert acc["ci_high"] - acc["ci_low"] >= 1 / 12 or acc["ci_high"] == acc["ci_low"] == acc["difference"]
    assert "test/acc" in capsys.readouterr().out


def test_compare_refuses_runs_tested_on_different_clips(tmp_path, two_runs, capsys):
    a, b = two_runs
    c = tmp_path / "c"
    shutil.copytree(b, c)
    rows = (c / "test_predictions.jsonl").read_text().splitlines()
    (c / "test_predictions.jsonl").write_text("\n".join(rows[:-1]) + "\n")  # one test clip fewer
    with pytest.raises(SystemExit) as e:
        main([str(a), str(c), "--out", str(tmp_path / "x.json")])
    msg = str(e.value)
    assert "different clips" in msg and "12 vs 11" in msg and "\n" not in msg
    assert not (tmp_path / "x.json").exists()


def test_seeds_aggregates_metrics(tmp_path, two_runs):
    out = tmp_path / "seeds.json"
    main(["--seeds", *map(str, two_runs), "--out", str(out)])
    res = json.loads(out.read_text())["metrics"]["test/acc"]
    accs = [json.loads((r / "metrics.json").read_text())["test/acc"] for r in two_runs]
    assert res["n"] == 2 and res["mean"] == pytest.approx(np.mean(accs))
    assert "test/acc_ci95_low" not in json.loads(out.read_text())["metrics"]
