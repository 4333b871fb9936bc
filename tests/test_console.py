"""What ``train.py`` and ``eval.py`` print, run as users run them (subprocesses, progress bars on)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

from tests.conftest import ROOT, TINY_WHISPER, folder_corpus

# Hydra's "[time][logger][LEVEL] - " and Lightning's own "LEVEL: " prefixes
PREFIX = re.compile(r"^(\[[^\]]*\]\[[^\]]+\]\[[A-Z]+\] - |(DEBUG|INFO|WARNING|ERROR|CRITICAL): )")


def console_lines(output: str) -> list[str]:
    """The lines a person reads, each reduced to its message.

    Rule: split stdout+stderr at newlines; of a line redrawn with carriage returns (a progress bar's
    frames) keep the last frame, the one left on screen; strip whitespace and drop empty lines; strip
    a logging prefix (Hydra's ``[time][logger][LEVEL] - `` or Lightning's ``LEVEL: ``), so one record
    printed by two handlers in two formats counts as the same line.
    """
    lines = (raw.split("\r")[-1].strip() for raw in output.split("\n"))
    return [PREFIX.sub("", line) for line in lines if line]


def run_script(script: str, *overrides: str, cwd) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def assert_each_line_once(output: str) -> None:
    twice = {line: n for line, n in Counter(console_lines(output)).items() if n > 1}
    assert not twice, f"printed more than once: {twice}\n--- console ---\n{output}"


def test_train_prints_each_line_once_and_eval_elsewhere_reproduces_it(tmp_path):
    clips = folder_corpus(tmp_path / "clips")
    (clips / "train" / "low" / "broken.wav").write_bytes(b"")  # one bad file: its lines must show, once
    common = [f"paths.cache_dir={tmp_path / 'cache'}", "trainer.accelerator=cpu"]
    out = run_script(
        "train.py",
        "data=folder",
        f"data.corpus.root={clips}",
        "data.on_bad_audio=skip",
        *common,
        *TINY_WHISPER,
        "~probe",  # the minibatch path: its progress bar and Lightning's lines are what is checked
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert_each_line_once(out)
    lines = console_lines(out)
    shown = "\n".join(lines)
    for expected in (
        "skipped 1 file(s) at header check {'empty': 1}",  # bad audio
        "features: rank 0/1 encoded",  # the features stage
        "GPU available: False, used: False",  # Lightning's own lines
        "`Trainer.fit` stopped: `max_epochs=1` reached.",
        "log_every_n_steps=10). Set a lower value",  # a warning that asks the user to act
        "summary",
        "skipped audio: 1 files",
    ):
        assert expected in shown, f"{expected!r} not on the console:\n{shown}"
    assert any(line.startswith("Epoch 0/0") for line in lines)  # the progress bar
    assert "litlogger" not in out and "LeafSpec" not in out  # third-party noise off the console ...
    log = (tmp_path / "run" / "train.log").read_text()
    for kept in ("GPU available", "`Trainer.fit` stopped", "litlogger", "LeafSpec", "skipped 1 file(s)"):
        assert kept in log  # ... but train.log keeps every line, once
    assert log.count("GPU available") == 1

    # eval.py as users type it: the checkpoint's data config with data.corpus.root pointing at a copy
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    copy = shutil.copytree(clips, tmp_path / "elsewhere")
    shutil.rmtree(clips)
    out = run_script(
        "eval.py",
        f"ckpt_path={best}",
        f"data.corpus.root={copy}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert_each_line_once(out)
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test/acc"] == metrics["test/acc"]
    assert abs(evaluated["test/loss"] - metrics["test/loss"]) < 1e-6


def test_a_wrong_data_key_stops_eval_before_composing(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "ckpt_path=/no/such.ckpt", "data.rooot=/x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "Error: no such checkpoint, ckpt_path=/no/such.ckpt. Fix: point ckpt_path at a file in <run dir>/checkpoints/"
    )


def test_console_lines_rule():
    out = (
        "INFO: GPU available\n[2026-12-01 10:00:00,1][lightning][INFO] - GPU available\nbar 1/2\rbar 2/2\n\n"
    )
    assert console_lines(out) == ["GPU available", "GPU available", "bar 2/2"]
