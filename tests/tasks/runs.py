"""Train -> eval -> predict on the tone corpus with a tiny random Whisper, for any task option."""

from __future__ import annotations

import json
from pathlib import Path

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, predict_rows, tone_overrides


def train_run(tmp_path: Path, corpus: dict, task: str, *extra: str, name: str = "run") -> tuple[Path, dict]:
    """(run dir, metrics.json) of ``train.py task=<task> *extra`` on ``corpus``."""
    out = tmp_path / name
    over = [*tone_overrides(corpus, tmp_path / "cache"), *TINY_WHISPER, f"task={task}", *extra]
    train(compose_train(over, out))
    return out, json.loads((out / "metrics.json").read_text())


def best_checkpoint(run_dir: Path) -> Path:
    return next((run_dir / "checkpoints").glob("best-*.ckpt"))


def eval_run(tmp_path: Path, ckpt: Path, *extra: str) -> dict:
    cfg = compose_train(
        [f"ckpt_path={ckpt}", "+trainer.enable_progress_bar=false", *extra], tmp_path / "eval", "eval"
    )
    return evaluate(cfg)


def predict_test_clips(tmp_path: Path, ckpt: Path, corpus: dict, *extra: str) -> dict[str, dict]:
    """predict.py's row for every test clip, by absolute audio path."""
    rows = predict_rows(ckpt, corpus["test"].parent / "audio", tmp_path / "p.json", *extra)
    test = {
        str(corpus["test"].parent / json.loads(x)["audio_filepath"])
        for x in corpus["test"].read_text().splitlines()
    }
    return {r["audio_filepath"]: r for r in rows if r["audio_filepath"] in test}


def read_test_rows(run_dir: Path, name: str = "test_predictions.jsonl") -> dict[str, dict]:
    return {json.loads(x)["audio_filepath"]: json.loads(x) for x in (run_dir / name).read_text().splitlines()}
