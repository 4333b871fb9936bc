"""Issue 31, items 3 and 5: each user error of a newcomer's first hour, run as the user ran it, ends in one
clean line ``Error: <what>, <where>. Fix: <how>`` (exit status 1), the traceback kept in the run's log;
programming errors keep their traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from asr_transfer.console import user_error, user_errors
from asr_transfer.utils.errors import ConfigError, MissingPathError, UserError
from tests.conftest import ROOT, TINY_WHISPER, folder_corpus
from tests.test_console import console_lines

OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
OFFLINE |= {k.lower(): v for k, v in OFFLINE.items()}  # urllib reads either spelling


def run_cli(script: str, *args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    """The script as a user runs it: Hydra's defaults (no HYDRA_FULL_ERROR), output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run(
        [sys.executable, *script.split(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """At most 3 console lines (a warning before it may stay), the last the error with its fix; exit 1."""
    out = proc.stdout + proc.stderr
    lines = console_lines(out)
    assert proc.returncode == 1, out[-3000:]
    assert 1 <= len(lines) <= 3, f"{len(lines)} lines:\n{out[-3000:]}"
    last = lines[-1]
    assert last.startswith("Error: ") and ". Fix: " in last, last
    assert "Traceback" not in out
    for text in expected:
        assert text in last, f"{text!r} not in {last!r}"
    return last


def _broken_folder(root):
    clips = folder_corpus(root)
    (clips / "train" / "low" / "broken.wav").write_bytes(b"")
    return clips


# (id, script, args made from tmp_path, environment, what the line names)
CASES = [
    ("folder_without_root", "train.py", lambda t: ["data=folder"], {}, ["data.corpus.root", "folder.yaml"]),
    (
        "manifest_wrong_field",
        "train.py",
        lambda t: ["data=manifest", f"data.train_manifest={t / 'm.jsonl'}", *TINY_WHISPER],
        {},
        ["m.jsonl, line 1, field 'audio_filepath'", "check_data.py"],
    ),
    (
        "fsdd_root_without_recordings",
        "train.py",
        lambda t: [f"data.corpus.root={t}", *TINY_WHISPER],
        {},
        ["no FSDD recordings", f"data.corpus.root={'{t}'}"],
    ),
    (
        "speech_commands_offline",
        "train.py",
        lambda t: ["data=speech_commands", f"data.corpus.download_dir={t / 'dl'}", *TINY_WHISPER],
        OFFLINE,
        ["could not download (<urlopen error", "by hand"],
    ),
    ("eval_bad_ckpt_path", "eval.py", lambda t: ["ckpt_path=/no/such.ckpt"], {}, ["ckpt_path=/no/such.ckpt"]),
    (
        "eval_not_a_checkpoint",
        "eval.py",
        lambda t: [f"ckpt_path={t / 'm.jsonl'}"],
        {},
        ["not a readable checkpoint"],
    ),
    (
        "eval_key_typo",
        "eval.py",
        lambda t: ["ckpt_path=/no/such.ckpt", "use_cach=false"],
        {},
        ["use_cach", "Fix: use_cache=false"],
    ),
    ("key_typo", "train.py", lambda t: ["optimiser.lr=1e-3"], {}, ["optimiser.lr", "Fix: optimizer.lr=1e-3"]),
    (
        "moved_key",
        "train.py",
        lambda t: ["data.root=/x"],
        {},
        ["data.corpus.root", "Fix: data.corpus.root=/x"],
    ),
    (
        "broken_wav",
        "train.py",
        lambda t: ["data=folder", f"data.corpus.root={_broken_folder(t / 'clips')}", *TINY_WHISPER],
        {},
        ["broken.wav", "data.on_bad_audio=skip"],
    ),
    (
        "report_run_dir_typo",
        "report.py",
        lambda t: [f"run_dir={t / 'outputs' / 'nosuch'}"],
        {},
        ["no such folder"],
    ),
]


@pytest.mark.parametrize("name,script,args,env,expected", CASES, ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_with_its_fix(tmp_path, name, script, args, env, expected):
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": "a.wav", "label": "x"}) + "\n"
    )  # not audio_filepath
    run_dir = tmp_path / "run"
    extra = [f"hydra.run.dir={run_dir}"] if script != "report.py" else []
    proc = run_cli(str(ROOT / script), *args(tmp_path), *extra, cwd=tmp_path, **env)
    assert_one_line_error(proc, *[e.replace("{t}", str(tmp_path)) for e in expected])
    if (run_dir / "train.log").is_file():  # the job had started: its log keeps the whole story
        log = (run_dir / "train.log").read_text()
        assert "Traceback (most recent call last)" in log and "Error: " in log
    assert not (
        tmp_path / "outputs"
    ).exists()  # report.py run_dir=<typo> made no folder (nor did anything else)


def test_a_key_typo_is_refused_where_hydra_would_add_it():
    # Hydra answers optimiser.lr=1e-3 with "use +optimiser.lr=1e-3", which exits 0 with optimiser unread
    proc = run_cli(str(ROOT / "train.py"), "+optimiser.lr=1e-3", cwd=ROOT)
    assert_one_line_error(proc, "+optimiser.lr=1e-3 adds a key that nothing reads", "Fix: optimizer.lr=1e-3")


def test_full_error_shows_the_traceback_on_the_console(tmp_path):
    proc = run_cli(
        str(ROOT / "train.py"), "data=folder", f"hydra.run.dir={tmp_path}", cwd=tmp_path, HYDRA_FULL_ERROR="1"
    )
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert "data.corpus.root" in proc.stderr


def test_user_errors_are_found_through_wrappers_and_programming_errors_propagate():
    from hydra.errors import InstantiationException

    inner = MissingPathError("no such thing", "data.corpus.root=/x", "point it elsewhere")
    try:
        try:
            raise inner
        except MissingPathError as e:
            raise InstantiationException("Error in call to target 'Folder'") from e
    except InstantiationException as wrapped:
        assert user_error(wrapped) is inner
    assert str(inner) == "no such thing, data.corpus.root=/x. Fix: point it elsewhere"
    assert isinstance(inner, FileNotFoundError) and isinstance(ConfigError("x"), ValueError)
    assert user_error(RuntimeError("a bug")) is None
    with pytest.raises(RuntimeError, match="a bug"), user_errors():
        raise RuntimeError("a bug")
    with pytest.raises(SystemExit) as e, user_errors():
        raise UserError("bad", "key x", "set x=1")
    assert e.value.code == 1


def test_a_missing_value_names_its_key_and_the_option_file():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"data": {"corpus": {"root": "???"}}})
    try:
        cfg.data.corpus.root  # noqa: B018
    except Exception as e:  # noqa: BLE001
        err = user_error(e)
    assert err is not None and err.error_line() == (
        "Error: data.corpus.root is not set (??? in the config), key data.corpus.root. Fix: give it: data.corpus.root=..."
    )
