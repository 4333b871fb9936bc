"""check_data.py names every bad target of the new tasks by manifest (or trials file) and line, and
follows the data's error-or-skip policy: a segment outside its clip or overlapping, an unknown or empty
tag, a NaN or missing regression target, and a trial naming a clip not in its split. A run with a bad
trials file stops before its first step (not at the first val or the test epoch's end)."""

from __future__ import annotations

import json

import pytest

from asr_transfer.data.manifest import ManifestError
from asr_transfer.pipeline.check_data import check_data
from asr_transfer.utils.jsonl import read_jsonl
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides
from tests.tasks.runs import train_run

# task -> (the bad rows appended to val, a phrase of each row's detail)
CASES = {
    "frames": [
        ({"segments": [{"start": 0.05, "end": 9.0, "label": "low"}]}, "after the clip's end"),
        (
            {
                "segments": [
                    {"start": 0.05, "end": 0.2, "label": "low"},
                    {"start": 0.1, "end": 0.25, "label": "low"},
                ]
            },
            "overlaps",
        ),
    ],
    "tagging": [
        ({"labels": ["nine"]}, "never occur in training"),
        ({"labels": [""]}, "empty"),
    ],
    "regression": [
        ({"target": float("nan")}, "not finite"),
        ({"target": None}, "missing"),
    ],
}


def append_bad_rows(manifest, changes: list[dict]) -> int:
    """The manifest's first row, changed, appended once per change; returns the first new line number."""
    rows = manifest.read_text().splitlines()
    first = json.loads(rows[0])
    new = []
    for change in changes:
        row = {**first, **change}
        new.append(json.dumps({k: v for k, v in row.items() if v is not None}))  # None: the field is missing
    manifest.write_text("\n".join([*rows, *new]) + "\n")
    return len(rows) + 1


def bad_target_rows(run_dir) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "data_check.jsonl") if r["reason"] == "bad_target"]


@pytest.mark.parametrize("task", sorted(CASES))
def test_check_data_names_bad_targets_by_manifest_and_row(tmp_path, tone_corpus, task):
    first = append_bad_rows(tone_corpus["val"], [change for change, _ in CASES[task]])
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, f"task={task}", "~features"]
    assert check_data(compose_train(over, tmp_path / "strict")) == 1
    bad = bad_target_rows(tmp_path / "strict")
    assert [(r["severity"], r["split"], r["manifest"], r["line"]) for r in bad] == [
        ("error", "val", str(tone_corpus["val"]), first + k) for k in range(len(CASES[task]))
    ]
    for row, (_, phrase) in zip(bad, CASES[task]):
        assert phrase in row["detail"], row["detail"]
    assert check_data(compose_train([*over, "data.on_bad_audio=skip"], tmp_path / "skip")) == 0
    assert [r["severity"] for r in bad_target_rows(tmp_path / "skip")] == ["skipped"] * len(CASES[task])


def trials_file(tmp_path, corpus) -> tuple:
    """val trials: two good lines, then one naming a training clip (not in the val split)."""
    val = [json.loads(x)["audio_filepath"] for x in corpus["val"].read_text().splitlines()]
    train = json.loads(corpus["train"].read_text().splitlines()[0])["audio_filepath"]
    root = corpus["val"].parent
    lines = [
        f"{root / val[0]} {root / val[1]} 1",
        f"{root / val[0]} {root / val[5]} 0",
        f"{root / val[0]} {root / train} 0",
    ]
    path = tmp_path / "val_trials.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, 3


def test_check_data_names_a_trial_whose_clip_is_not_in_the_split(tmp_path, tone_corpus):
    path, line = trials_file(tmp_path, tone_corpus)
    over = [*tone_overrides(tone_corpus, tmp_path / "cache"), *TINY_WHISPER, "task=verification", "~features",
            f"task.trials.val={path}"]  # fmt: skip
    assert check_data(compose_train(over, tmp_path / "strict")) == 1
    bad = bad_target_rows(tmp_path / "strict")
    assert [(r["severity"], r["split"], r["manifest"], r["line"]) for r in bad] == [
        ("error", "val", str(path), line)
    ]
    assert "is not in this split's manifest" in bad[0]["detail"]
    assert check_data(compose_train([*over, "data.on_bad_audio=skip"], tmp_path / "skip")) == 0
    assert [r["severity"] for r in bad_target_rows(tmp_path / "skip")] == ["skipped"]
    # a trials file that does not exist stops a run whatever the policy
    missing = [*over[:-1], f"task.trials.val={tmp_path / 'nope.txt'}", "data.on_bad_audio=skip"]
    assert check_data(compose_train(missing, tmp_path / "missing")) == 1
    assert "trials file not found" in bad_target_rows(tmp_path / "missing")[0]["detail"]


def test_a_run_stops_on_a_bad_trial_before_training(tmp_path, tone_corpus):
    path, line = trials_file(tmp_path, tone_corpus)
    with pytest.raises(ManifestError, match=f"line {line}") as e:
        train_run(
            tmp_path, tone_corpus, "verification", "~probe", "trainer.max_epochs=1", f"task.trials.val={path}"
        )
    assert e.value.path == str(path)
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))  # no epoch ran
