"""Issue 31, items 4, 6, 7, 8 and 9, each as a newcomer met it: leakage unwarned, private result files,
``label`` meaning two things, eval runs that look like training runs, the report losing its curves, and
the few-shot runner's console."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys

import pytest
import torch

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import (
    ROOT,
    TINY_WHISPER,
    compose_train,
    folder_corpus,
    predict_rows,
    tone_overrides,
    write_tone_corpus,
)
from tests.test_console import assert_each_line_once, console_lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run of the main job's path (the exact probe) on the tone corpus (speakers s0, s1 train; s3
    test), under umask 022: (run dir, best checkpoint, corpus, tmp)."""
    tmp = tmp_path_factory.mktemp("first_hour")
    corpus = write_tone_corpus(tmp)
    old = os.umask(0o022)
    try:
        cfg = compose_train([*tone_overrides(corpus, tmp / "cache"), *TINY_WHISPER], tmp / "run")
        train(cfg)
    finally:
        os.umask(old)
    best = next((tmp / "run" / "checkpoints").glob("best*.ckpt"))
    return tmp / "run", best, corpus, tmp


# ----- (4) leakage is named ---------------------------------------------------------------------------------
def test_eval_on_the_speakers_it_trained_on_warns_with_counts(trained, caplog):
    run, best, corpus, tmp = trained
    state = torch.load(best, weights_only=True)
    assert state["asr_transfer"]["training_data"]["speakers"] == ["s0", "s1"]
    assert len(state["asr_transfer"]["training_data"]["clips"]) == 24
    # the documented eval example (docs/how-to/evaluate-predict.md), data.corpus.test_speakers=[george], on a checkpoint that trained on george:
    # here the test split is the training manifest itself
    with caplog.at_level(logging.WARNING):
        cfg = compose_train(
            [
                f"ckpt_path={best}",
                f"data.test_manifest={corpus['train']}",
                "+trainer.enable_progress_bar=false",
            ],
            tmp / "eval_leak",
            "eval",
        )
        evaluate(cfg)
    assert (
        "leakage: the checkpoint has seen this data: 24 of 24 test clips were in its training split; "
        "2 of 2 speakers (s0, s1) trained on" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # its own test split (speaker s3): nothing to say
        evaluate(
            compose_train(
                [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp / "eval_ok", "eval"
            )
        )
    assert "leakage" not in caplog.text


def test_predict_on_training_clips_warns_with_counts(trained, caplog):
    run, best, corpus, tmp = trained
    with caplog.at_level(logging.WARNING):
        rows = predict_rows(best, corpus["train"].parent / "audio", tmp / "p" / "p.json")
    assert len(rows) == 48  # every clip of the corpus: 24 trained on
    assert (
        "leakage: the checkpoint has seen this data: 24 of 48 inputs were in its training split"
        in caplog.text
    )


def test_a_folder_split_by_clip_says_speakers_may_cross_splits(tmp_path, caplog):
    from asr_transfer.data.corpora.folder import Folder

    (tmp_path / "clips" / "a").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        Folder(str(tmp_path / "clips"), manifest_dir=str(tmp_path / "m"))
    assert "clips of one speaker may land in train, val and test" in caplog.text
    assert "\"data.corpus.speaker_regex='^([a-z]+)_'\"" in caplog.text  # the quoting bash keeps
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Folder(str(tmp_path / "clips"), speaker_regex="^([a-z]+)_", manifest_dir=str(tmp_path / "m"))
        Folder(
            str(folder_corpus(tmp_path / "split")), manifest_dir=str(tmp_path / "m")
        )  # its own split folders
    assert "speaker" not in caplog.text


# ----- (6) result files are written with the process's umask -------------------------------------------------
def test_result_files_follow_the_umask(trained):
    run, best, _, _ = trained
    for name in ("metrics.json", "confusion_matrix.json", "test_predictions.jsonl"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(best.stat().st_mode) == 0o644


def test_atomic_writes_follow_the_umask(tmp_path):
    from asr_transfer.utils.atomic import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


# ----- (7) one vocabulary: ref / pred ------------------------------------------------------------------------
def test_run_files_say_ref_and_pred(trained):
    run, best, corpus, tmp = trained
    rows = [json.loads(x) for x in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"index", "audio_filepath", "ref", "pred", "top", "probs"}
    assert all(r["pred"] == r["top"][0] for r in rows)
    truth = {
        json.loads(x)["audio_filepath"].split("/")[-1]: json.loads(x)["label"]
        for x in corpus["test"].read_text().splitlines()
    }
    assert all(r["ref"] == truth[r["audio_filepath"].split("/")[-1]] for r in rows)
    preds = predict_rows(best, corpus["test"].parent / "audio" / "low_s3_0.wav", tmp / "p7" / "p.json")
    assert list(preds[0])[:3] == ["audio_filepath", "pred", "confidence"]  # predictions.csv's header too


def test_the_report_reads_older_runs_words():
    from asr_transfer.report.rundir import ref_pred

    old = [{"index": 0, "label": "a", "top": ["b", "a"]}, {"index": 1, "ref": "x y", "hyp": "x"}]
    assert [(r["ref"], r["pred"]) for r in ref_pred(old)] == [("a", "b"), ("x y", "x")]


def test_metrics_are_stored_without_float32_noise(trained):
    run, *_ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    scores = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}  # float32 tensors
    assert "test/f1" in scores
    for k, v in scores.items():
        assert v == float(f"{v:.7g}"), (k, v)  # e.g. test/f1 1.0, not 1.0000001192092896


# ----- (8) where outputs went --------------------------------------------------------------------------------
def test_eval_writes_its_own_kind_of_folder_and_prints_it(trained):
    run, best, _, tmp = trained
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={best}", "+trainer.enable_progress_bar=false"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (day,) = (tmp / "outputs" / "eval").iterdir()
    (folder,) = day.iterdir()
    assert (folder / "eval.log").is_file() and (folder / "metrics.json").is_file()
    assert not (folder / "train.log").exists()
    assert f"results in {folder}" in proc.stdout


def test_every_logger_keeps_the_csv_metrics_the_report_draws():
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for choice in ("csv", "tensorboard", "wandb", "many"):
            cfg = compose("train", overrides=[f"logger={choice}"])
            assert cfg.logger.csv._target_ == "lightning.pytorch.loggers.CSVLogger", choice
            assert "csv" not in cfg  # in its place, not at the top level


def test_a_tensorboard_run_keeps_the_reports_learning_curves(tmp_path, tone_corpus):
    from asr_transfer.report.rundir import metric_log

    out = tmp_path / "run"
    overrides = [
        *tone_overrides(tone_corpus, tmp_path / "cache"),
        *TINY_WHISPER,
        "logger=tensorboard",
        "~probe",
    ]
    train(compose_train([*overrides, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"], out))
    assert any((out / "tensorboard").iterdir())
    rows = metric_log(out)  # what the report's curves read
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/acc") for r in rows)


# ----- (9) the few-shot runner ------------------------------------------------------------------------------
def fewshot(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "asr_transfer.fewshot", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_fewshot_help_and_key_redirect(tmp_path):
    helptext = fewshot("--help", cwd=tmp_path).stdout
    assert "data.corpus.test_speakers=[george]" in helptext and "data.test_speakers" not in helptext
    assert "draws of k clips per class" in helptext and "draws.csv and summary.csv" in helptext
    proc = fewshot("--k", "2", "data.root=/x", cwd=tmp_path)  # an override right after --k's numbers
    assert proc.returncode == 1 and proc.stderr.strip().endswith("Fix: data.corpus.root=/x")


def test_fewshot_prints_each_line_once_and_a_readable_summary(tmp_path):
    clips = folder_corpus(tmp_path / "clips")
    proc = fewshot(
        "--k", "2", "--draws", "1", "--out", str(tmp_path / "fs"), "data=folder", f"data.corpus.root={clips}",
        f"paths.cache_dir={tmp_path / 'cache'}", "trainer.accelerator=cpu", *TINY_WHISPER, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert_each_line_once(out)
    assert "litlogger" not in out and "Tip:" not in out
    lines = console_lines(out)
    start = lines.index("k=2 (1 draw): mean ± std over draws")
    summary = lines[start + 1 :]
    assert any(line.startswith("test/acc") for line in summary)
    total = next(line for line in summary if line.startswith("params/total"))
    assert ".0000" not in total and total.split()[1].isdigit()  # a count, printed as one
    f1 = json.loads((tmp_path / "fs" / "k2" / "draw0" / "metrics.json").read_text())["test/f1"]
    assert f1 == float(f"{f1:.7g}")
