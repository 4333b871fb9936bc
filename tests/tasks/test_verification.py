"""task=verification: EER and minDCF on known score sets, AAM-softmax against its formula, trials files
(bad trials named by file and line), s-norm, and train -> eval -> predict agreement."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.tasks.trials import adaptive_snorm, eer, min_dcf, read_trials, verification_metrics
from asr_transfer.tasks.verification import AAMSoftmax
from tests.tasks.runs import best_checkpoint, eval_run, predict_test_clips, train_run


def brute_force(scores: np.ndarray, targets: np.ndarray, p: float) -> tuple[float, float]:
    """(EER as the mean of the two rates where they are closest, minDCF) over every threshold."""
    cuts = np.concatenate([[-np.inf], np.sort(scores), [np.inf]])
    miss = np.array([(scores[targets] < c).mean() for c in cuts])
    fa = np.array([(scores[~targets] >= c).mean() for c in cuts])
    k = np.argmin(np.abs(miss - fa))
    dcf = (p * miss + (1 - p) * fa).min() / min(p, 1 - p)
    return (miss[k] + fa[k]) / 2, dcf


def test_eer_and_min_dcf_on_known_score_sets():
    t = torch.tensor([True, True, True, False, False, False])
    assert eer(torch.tensor([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), t) == 0.0  # separated
    assert min_dcf(torch.tensor([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), t, 0.01) == 0.0
    assert eer(torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), t) == 1.0  # reversed
    # one target below one non-target of 3+3: one miss or one false alarm in three -> EER 1/3
    assert eer(torch.tensor([0.9, 0.8, 0.25, 0.3, 0.2, 0.1]), t) == pytest.approx(1 / 3)
    # Gaussian scores N(+1, 1) vs N(-1, 1): EER = Phi(-1)
    g = torch.Generator().manual_seed(0)
    n = 20000
    scores = torch.cat([1 + torch.randn(n, generator=g), -1 + torch.randn(n, generator=g)])
    targets = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    assert eer(scores, targets) == pytest.approx(norm.cdf(-1), abs=0.005)
    sub = torch.randperm(2 * n, generator=g)[:400]
    for p in (0.01, 0.05):
        ref_eer, ref_dcf = brute_force(scores[sub].numpy(), targets[sub].numpy(), p)
        assert eer(scores[sub], targets[sub]) == pytest.approx(ref_eer, abs=0.5 / 200)
        assert min_dcf(scores[sub], targets[sub], p) == pytest.approx(ref_dcf, abs=1e-6)
    with pytest.raises(ValueError, match="non-target trial"):
        verification_metrics(torch.rand(4), torch.zeros(4, dtype=torch.bool))


def test_aam_softmax_against_its_formula():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 5, margin=0.3, scale=20.0)
    emb, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    got = aam.logits(emb, labels).detach()
    w = aam.weight.detach()
    for i in range(16):
        for c in range(5):
            cos = float(emb[i] @ w[c] / (emb[i].norm() * w[c].norm()))
            theta = math.acos(cos)
            want = 20 * (math.cos(theta + 0.3) if c == labels[i] and theta + 0.3 < math.pi else cos)
            if c == labels[i] and theta + 0.3 >= math.pi:
                want = 20 * (cos - 0.3 * math.sin(0.3))
            assert float(got[i, c]) == pytest.approx(want, abs=1e-4)
    assert float(aam(emb, labels).detach()) == pytest.approx(
        float(torch.nn.functional.cross_entropy(got, labels))
    )


def test_trials_file_and_bad_trials_named(tmp_path):
    entries = [Entry(str(tmp_path / f"{k}.wav"), speaker=s) for k, s in enumerate("aabb")]
    good = "enroll test target\n0.wav 1.wav 1\n0.wav 2.wav 0\n"
    (tmp_path / "t.txt").write_text(good + "1.wav missing.wav 0\n3.wav 2.wav true\n")
    with pytest.raises(
        ManifestError, match=r"clip 'missing.wav' is not in this split's manifest, .*t.txt, line 4"
    ):
        read_trials(tmp_path / "t.txt", entries)
    a, b, t, faults = read_trials(tmp_path / "t.txt", entries, skip=True)
    assert a.tolist() == [0, 0, 3] and b.tolist() == [1, 2, 2] and t.tolist() == [True, False, True]
    assert [f.line for f in faults] == [4]


def test_snorm_standardises_each_side_against_the_cohort():
    g = torch.Generator().manual_seed(1)
    emb, cohort = torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    got = adaptive_snorm(emb, cohort, torch.tensor([0, 1]), torch.tensor([2, 3]), top_k=3)
    n = torch.nn.functional.normalize
    c = n(emb) @ n(cohort).T
    top = c.topk(3, -1).values
    raw = (n(emb)[[0, 1]] * n(emb)[[2, 3]]).sum(-1)
    want = 0.5 * (
        (raw - top[[0, 1]].mean(-1)) / top[[0, 1]].std(-1)
        + (raw - top[[2, 3]].mean(-1)) / top[[2, 3]].std(-1)
    )
    torch.testing.assert_close(got, want)


def mixed_speakers(corpus: dict) -> dict:
    """Val and test each hold clips of both unseen speakers (s2, s3): non-target trials exist."""
    rows = {s: [json.loads(x) for x in corpus[s].read_text().splitlines()] for s in ("val", "test")}
    pooled = rows["val"] + rows["test"]
    for k, split in enumerate(("val", "test")):
        corpus[split].write_text("".join(json.dumps(r) + "\n" for r in pooled[k::2]))
    return corpus


def test_train_eval_predict_agree(tmp_path, tone_corpus):
    corpus = mixed_speakers(tone_corpus)
    run, metrics = train_run(
        tmp_path, corpus, "verification", "~probe", "trainer.max_epochs=2", "task.snorm_top_k=5"
    )
    assert {"val/eer", "test/eer", "test/min_dcf_0.01", "test/min_dcf_0.05"} <= set(metrics)
    trials = [json.loads(x) for x in (run / "test_trials.jsonl").read_text().splitlines()]
    assert (
        len(trials) == 12 * 11 // 2
        and any(t["target"] for t in trials)
        and not all(t["target"] for t in trials)
    )
    ckpt = best_checkpoint(run)
    assert torch.load(ckpt, weights_only=True)["asr_transfer"]["speakers"] == ["s0", "s1"]
    assert eval_run(tmp_path, ckpt)["test/eer"] == pytest.approx(metrics["test/eer"], abs=1e-6)
    # predict: embeddings per clip, and a trials file over them scored as the run scored it (raw cosine)
    test_clips = [
        str(corpus["test"].parent / json.loads(x)["audio_filepath"])
        for x in corpus["test"].read_text().splitlines()
    ]
    lines = [f"{t['enroll']} {t['test']} {int(t['target'])}" for t in trials]
    (tmp_path / "trials.txt").write_text("\n".join(lines) + "\n")
    predicted = predict_test_clips(tmp_path, ckpt, corpus, f"+trials={tmp_path / 'trials.txt'}")
    assert set(predicted) == set(test_clips)
    scored = [json.loads(x) for x in (tmp_path / "pred" / "scores.jsonl").read_text().splitlines()]
    emb = {p: np.array(r["embedding"].split(), dtype=float) for p, r in predicted.items()}
    for s in scored[:10]:
        assert s["score"] == pytest.approx(float(emb[s["enroll"]] @ emb[s["test"]]), abs=1e-4)
    raw, _ = train_run(tmp_path, corpus, "verification", "~probe", "trainer.max_epochs=2", name="raw")
    raw_trials = [json.loads(x) for x in (raw / "test_trials.jsonl").read_text().splitlines()]
    for s, r in zip(scored, raw_trials):  # predict.py's cosine equals the test run's raw cosine
        assert (s["enroll"], s["test"]) == (r["enroll"], r["test"]) and s["score"] == pytest.approx(
            r["score"], abs=1e-4
        )


def test_zero_training_layerwise_baseline(tmp_path, tone_corpus):
    from asr_transfer.verification_layers import main
    from tests.conftest import TINY_WHISPER, tone_overrides

    corpus = mixed_speakers(tone_corpus)
    out = main(
        ["--out", str(tmp_path / "layers"), *tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER]
    )
    rows = list(csv.DictReader(open(out / "layers.csv")))
    assert [(r["layer"], r["centred"]) for r in rows] == [
        (str(k), c) for k in range(3) for c in ("False", "True")
    ]
    best = json.loads((out / "best.json").read_text())
    assert best["val/eer"] == min(float(r["val/eer"]) for r in rows)
    # the same numbers by hand for one layer: mean-pooled frames of layer 1, all pairs of the test split
    from asr_transfer.pipeline.build import build_backbone
    from asr_transfer.tasks.trials import eer
    from tests.conftest import compose_train

    cfg = compose_train([*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER], tmp_path / "x")
    backbone = build_backbone(cfg)
    from asr_transfer.data.audio import load_audio

    test = [json.loads(x) for x in corpus["test"].read_text().splitlines()]
    embs = []
    with torch.no_grad():
        for r in test:
            wav = load_audio(str(corpus["test"].parent / r["audio_filepath"]), 16000, None, 0.0, 400)
            hidden, _ = backbone(wav[None], torch.tensor([len(wav)]))
            embs.append(hidden[1][0].mean(0))
    embs = torch.stack(embs)
    a, b = zip(*[(i, j) for i in range(len(test)) for j in range(i + 1, len(test))])
    scores = torch.nn.functional.cosine_similarity(embs[list(a)], embs[list(b)])
    same = torch.tensor([test[i]["speaker"] == test[j]["speaker"] for i, j in zip(a, b)])
    raw1 = next(r for r in rows if r["layer"] == "1" and r["centred"] == "False")
    assert float(raw1["test/eer"]) == pytest.approx(eer(scores, same), abs=0.02)
