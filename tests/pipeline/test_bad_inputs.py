"""Issue 4: every bad input gets a clear error or is skipped and counted.

The corpus: real FSDD digits from ../shared (generated tones when absent) with every bad and
odd-but-valid case of tests/bad_inputs.py mixed in. Runs use the tiny random Whisper.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_transfer.data.audio import AudioError
from asr_transfer.pipeline.check_data import check_data
from asr_transfer.pipeline.train import train
from asr_transfer.utils.jsonl import read_jsonl as load_report
from tests.bad_inputs import bad_cases, odd_cases
from tests.conftest import (
    FSDD_DIR,
    TINY_WHISPER,
    compose_train,
    needs_shared,
    run_python,
    tone,
    write_wav,
)

SPLIT_SPEAKERS = {"train": ["george", "jackson"], "val": ["nicolas"], "test": ["yweweler"]}
PER_DIGIT = {"train": 2, "val": 1, "test": 2}


def good_rows(tmp: Path) -> dict[str, list[dict]]:
    """FSDD clips per split (speaker-disjoint), or tones with the same shape when ../shared is absent."""
    rows: dict[str, list[dict]] = {}
    rec = FSDD_DIR / "recordings"
    for split, speakers in SPLIT_SPEAKERS.items():
        rows[split] = []
        for spk in speakers:
            for digit in range(10):
                for k in range(PER_DIGIT[split]):
                    path = rec / f"{digit}_{spk}_{k}.wav"
                    if not rec.is_dir():  # fallback: 10 tone classes
                        path = write_wav(
                            tmp / "tones" / path.name, tone(0.4, 8000, 200.0 * (digit + 1), k), 8000
                        )
                    rows[split].append({"audio_filepath": str(path), "label": str(digit), "speaker": spk})
    return rows


def mixed_corpus(tmp: Path) -> dict:
    """Manifests with bad lines (``mixed``) and the same without them (``clean``), plus the expectation."""
    good = good_rows(tmp)
    data = {}
    for split in good:
        src_row = good[split][0]
        source, sr = sf.read(src_row["audio_filepath"], dtype="float32")
        odd = odd_cases(tmp / f"odd_{split}", source, sr) if split != "val" else []
        bad = bad_cases(tmp / f"bad_{split}", source, sr)
        label = src_row["label"]
        odd_rows = [{"audio_filepath": str(c.path), "label": label} for c in odd]
        bad_rows = [{"audio_filepath": str(c.path), "label": label} for c in bad]
        # bad files at the end of the list: the header check must still stop a run in seconds
        data[split] = {
            "clean": good[split] + odd_rows,
            "mixed": good[split] + odd_rows + bad_rows,
            "bad": bad,
        }
    out = {"expected": {}, "odd": {s: len(d["clean"]) - len(good[s]) for s, d in data.items()}}
    for kind in ("clean", "mixed"):
        for split, d in data.items():
            m = tmp / f"{kind}_{split}.jsonl"
            m.write_text("".join(json.dumps(r) + "\n" for r in d[kind]))
            out[(kind, split)] = m
    for split, d in data.items():
        out["expected"].update({(str(c.path), split): c.reason for c in d["bad"]})
    out["first_bad"] = data["train"]["bad"][0]
    out["first_bad_line"] = len(data["train"]["clean"]) + 1
    return out


def overrides(corpus: dict, kind: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "data=manifest",
        *(f"data.{s}_manifest={corpus[(kind, s)]}" for s in ("train", "val", "test")),
        f"paths.cache_dir={tmp / 'cache'}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "data.batch_size=8",
        "data.max_duration=10",  # the 60 s recording is cropped to 10 s
        "trainer.max_epochs=3",
        "optimizer.lr=0.01",
        *TINY_WHISPER,
        *extra,
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return mixed_corpus(tmp_path_factory.mktemp("mixed"))


def test_skip_finishes_lists_bad_files_and_changes_nothing(tmp_path, corpus, caplog):
    ref = compose_train(overrides(corpus, "clean", tmp_path), tmp_path / "clean")
    train(ref)
    cfg = compose_train(overrides(corpus, "mixed", tmp_path, "data.on_bad_audio=skip"), tmp_path / "mixed")
    with caplog.at_level("INFO"):
        train(cfg)
    listed = [json.loads(x) for x in (tmp_path / "mixed" / "bad_audio.jsonl").read_text().splitlines()]
    got = {(r["audio_filepath"], r["split"]): r["reason"] for r in listed}
    assert got == corpus["expected"]  # every bad file, each once, with the right reason; no odd file
    assert len(listed) == len(got)
    assert all(r["manifest"] and r["line"] > 0 for r in listed)
    assert f"skipped audio: {len(got)} files" in caplog.text
    assert "clip(s) shorter than 400 samples" in caplog.text  # short clips: said once per split
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    mixed = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    # the odd files are used, the bad ones change nothing: same model, same metrics
    for key in ("val/acc", "test/acc", "test/f1", "test/loss"):
        assert mixed[key] == pytest.approx(clean[key], abs=1e-5), key


def test_error_stops_in_seconds_naming_the_first_bad_file(tmp_path, corpus):
    cfg = compose_train(overrides(corpus, "mixed", tmp_path), tmp_path / "run")
    t0 = time.perf_counter()
    with pytest.raises(AudioError) as e:
        train(cfg)
    seconds = time.perf_counter() - t0
    first = corpus["first_bad"]
    msg = str(e.value)
    assert e.value.reason == first.reason == "missing"
    assert str(first.path) in msg and "train split" in msg
    assert f"{corpus[('mixed', 'train')]} line {corpus['first_bad_line']}" in msg and "Fix:" in msg
    assert seconds < 30, seconds  # header checks only: no decode, no training step
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_error_on_content_fault_names_file_before_training(tmp_path, corpus):
    """NaN samples pass the header check; the frozen-feature cache decodes before the first step."""
    rows = [json.loads(x) for x in corpus[("clean", "train")].read_text().splitlines()]
    nan = tmp_path / "nan.wav"
    x = np.array(sf.read(rows[0]["audio_filepath"], dtype="float32")[0])
    x[10] = np.nan
    sf.write(str(nan), x, 8000, subtype="FLOAT")
    m = tmp_path / "train.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"audio_filepath": str(nan), "label": "0"}]))
    cfg = compose_train(overrides(corpus, "clean", tmp_path, f"data.train_manifest={m}"), tmp_path / "run")
    with pytest.raises(AudioError) as e:
        train(cfg)
    assert (
        e.value.reason == "non_finite"
        and str(nan) in str(e.value)
        and f"line {len(rows) + 1}" in str(e.value)
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_data_reports_every_problem_at_once(tmp_path, corpus):
    # add manifest faults to the val split: a broken line and a label training never saw
    val = tmp_path / "val.jsonl"
    lines = corpus[("mixed", "val")].read_text().splitlines()
    first = json.loads(lines[0])
    lines += ['{"audio_filepath": "x.wav", "label": ', json.dumps({**first, "label": "eleven"})]
    val.write_text("\n".join(lines) + "\n")
    args = [
        *overrides(corpus, "mixed", tmp_path),
        f"data.val_manifest={val}",
        f"hydra.run.dir={tmp_path / 'check'}",
    ]
    proc = run_python("check_data.py", *args, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = load_report(tmp_path / "check" / "data_check.jsonl")
    errors = {(r["audio_filepath"], r["split"]): r["reason"] for r in report if r["severity"] == "error"}
    for key, reason in corpus["expected"].items():
        assert errors.get(key) == reason, key
    assert any(r["reason"] == "manifest" and r["line"] == len(lines) - 1 for r in report)
    assert any(r["reason"] == "unseen_label" and r["line"] == len(lines) for r in report)
    notes = {(Path(r["audio_filepath"]).name, r["reason"]) for r in report if r["severity"] == "note"}
    assert {("short5ms.wav", "padded"), ("one_sample.wav", "padded"), ("long60s.wav", "cropped")} <= notes
    for reason in set(corpus["expected"].values()):
        assert reason in proc.stdout  # the table of counts per reason
    # the same data with skip: nothing would stop a run (bad files become "skipped")
    cfg = compose_train([*overrides(corpus, "mixed", tmp_path), "data.on_bad_audio=skip"], tmp_path / "c2")
    assert check_data(cfg) == 0
    report = load_report(tmp_path / "c2" / "data_check.jsonl")
    assert {r["severity"] for r in report} == {"skipped", "note"}


@needs_shared
@pytest.mark.slow
def test_real_whisper_accuracy_unchanged_by_bad_and_odd_inputs(tmp_path, corpus):
    """Frozen Whisper tiny.en (cached features): odd files used, bad ones skipped, accuracy as clean."""
    real = [o for o in overrides(corpus, "clean", tmp_path) if not o.startswith(("backbone.", "+backbone."))]
    train(compose_train(real, tmp_path / "clean"))
    mixed = [o.replace("clean_", "mixed_") for o in real] + ["data.on_bad_audio=skip"]
    train(compose_train(mixed, tmp_path / "mixed"))
    clean = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    got = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert clean["test/acc"] > 0.8
    assert got["test/acc"] == pytest.approx(clean["test/acc"], abs=1e-5)
