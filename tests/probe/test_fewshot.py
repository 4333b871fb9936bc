"""The few-shot runner: draws are nested across budgets, deterministic, and every draw keeps its run dir."""

from __future__ import annotations

import csv
import statistics

import pytest
import scipy.stats

from asr_transfer.pipeline.fewshot import compose_draw, run
from tests.conftest import TINY_WHISPER, audio_datamodule, tone, write_wav


@pytest.fixture
def folder_corpus(tmp_path):
    """root/train|val|test/<label>/*.wav: 12 training clips per class, 3 classes."""
    for split, n in (("train", 12), ("val", 3), ("test", 3)):
        for label, f in (("low", 300.0), ("mid", 800.0), ("high", 1800.0)):
            for i in range(n):
                write_wav(
                    tmp_path / "clips" / split / label / f"{label}_{i}.wav",
                    tone(0.3, 8000, f * (1 + 0.01 * i), i),
                    8000,
                )
    return tmp_path / "clips"


def _overrides(root, tmp_path):
    return ["data=folder", f"data.corpus.root={root}", f"paths.cache_dir={tmp_path / 'cache'}", "trainer.accelerator=cpu",
            "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", *TINY_WHISPER]  # fmt: skip


class _Rate:
    sample_rate, min_samples = 16000, 400


def train_clips(cfg) -> list[str]:
    dm = audio_datamodule(cfg, _Rate())
    dm.setup("fit")
    return sorted(e.audio_filepath for e in dm.entries["train"])


def test_draws_nested_and_deterministic(tmp_path, folder_corpus):
    ov = _overrides(folder_corpus, tmp_path)
    small = {d: train_clips(compose_draw(ov, 2, d, 0, tmp_path / "r")) for d in (0, 1)}
    big = {d: train_clips(compose_draw(ov, 5, d, 0, tmp_path / "r")) for d in (0, 1)}
    for d in (0, 1):
        assert len(small[d]) == 3 * 2 and len(big[d]) == 3 * 5
        assert set(small[d]) <= set(big[d])  # k=2's clips are among k=5's for the same draw
        assert train_clips(compose_draw(ov, 5, d, 0, tmp_path / "r")) == big[d]  # the same set again
    assert small[0] != small[1]  # different draws, different clips


def test_runner_keeps_every_draw_and_summarises(tmp_path, folder_corpus):
    rows = run([2], 2, tmp_path / "fs", _overrides(folder_corpus, tmp_path))
    assert [(r["k"], r["draw"], r["subset_seed"]) for r in rows] == [(2, 0, 0), (2, 1, 1)]
    for r in rows:
        assert (tmp_path / "fs" / "k2" / f"draw{r['draw']}" / "metrics.json").is_file()
    summary = list(csv.DictReader(open(tmp_path / "fs" / "summary.csv")))
    accs = [r["test/acc"] for r in rows]
    assert float(summary[0]["test/acc mean"]) == pytest.approx(statistics.fmean(accs), abs=1e-4)
    assert float(summary[0]["test/acc std"]) == pytest.approx(statistics.stdev(accs), abs=1e-4)
    half = scipy.stats.t.ppf(0.975, 1) * statistics.stdev(accs) / 2**0.5  # the 95 % t-interval over 2 draws
    low, high = float(summary[0]["test/acc ci95_low"]), float(summary[0]["test/acc ci95_high"])
    if half > 0:
        assert (low, high) == pytest.approx(
            (statistics.fmean(accs) - half, statistics.fmean(accs) + half), abs=1e-4
        )
    else:
        assert low == high == pytest.approx(accs[0], abs=1e-4)
    cpu = [r["cpu_seconds"] for r in rows]
    assert float(summary[0]["cpu_seconds mean"]) == pytest.approx(statistics.fmean(cpu), abs=1e-2)
