"""check_data.py and a run agree on every case of the bad-input corpus (tests/bad_inputs.py): the same
files left out (with the same reason), cropped and zero-padded, for label and for text targets."""

from __future__ import annotations

import json

import pytest

from asr_transfer.data.audio import AudioError
from asr_transfer.pipeline.build import build_backbone
from asr_transfer.pipeline.check_data import check_data, scan
from tests.bad_inputs import bad_cases, odd_cases
from tests.conftest import TINY_WHISPER, audio_datamodule, compose_train, tone, write_wav


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agree")
    source = tone(0.5, 16000, 440.0, 1)
    out = {}
    for split in ("train", "val"):
        good = [
            write_wav(tmp / split / f"good{k}.wav", tone(0.4, 16000, 300.0 * (k + 1), k), 16000)
            for k in range(2)
        ]
        cases = [
            *odd_cases(tmp / f"odd_{split}", source, 16000),
            *bad_cases(tmp / f"bad_{split}", source, 16000),
        ]
        rows = [
            {"audio_filepath": str(p), "label": "a", "text": "a"} for p in [*good, *(c.path for c in cases)]
        ]
        out[split] = tmp / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def config(manifests, tmp_path, *extra):
    over = [
        "data=manifest",
        f"data.train_manifest={manifests['train']}",
        f"data.val_manifest={manifests['val']}",
    ]
    over += [f"paths.cache_dir={tmp_path / 'cache'}", "data.max_duration=10", *TINY_WHISPER, *extra]
    return compose_train(over, tmp_path / "run")


def run_verdicts(cfg) -> dict:
    """What a run does with each file: header checks at setup, then every clip decoded as training would."""
    backbone = build_backbone(cfg)
    dm = audio_datamodule(cfg, backbone, run_dir=None)
    dm.setup("fit")
    out = {}
    for split, ds in dm.datasets.items():
        for i, e in enumerate(ds.entries):
            item = ds[i]
            if item is not None and item["wav"].shape[-1] == ds.max_samples:
                out[(split, e.audio_filepath)] = "cropped"
            elif item is not None and item["wav"].shape[-1] == ds.min_samples:
                out[(split, e.audio_filepath)] = "padded"
    out.update({(r["split"], r["audio_filepath"]): r["reason"] for r in dm.bad_log.records})
    return out


def check_verdicts(cfg) -> dict:
    problems, _ = scan(cfg)
    order = {"skipped": 0, "error": 0, "note": 1}  # a file left out is reported by its reason only
    out = {}
    for p in sorted(problems, key=lambda p: -order[p.severity]):
        if p.audio_filepath and p.reason != "duplicate":
            out[(p.split, p.audio_filepath)] = p.reason
    return out


@pytest.mark.parametrize("task", ["classification", "ctc"])
def test_check_data_and_a_run_agree_on_every_case(manifests, tmp_path, task):
    extra = ["data.on_bad_audio=skip", f"task={task}", *(["head=ctc_linear"] if task == "ctc" else [])]
    cfg = config(manifests, tmp_path, *extra)
    run, check = run_verdicts(cfg), check_verdicts(cfg)
    assert check == run
    long = [k for k in run if k[1].endswith("long60s.wav")]
    # labels survive a crop, transcripts do not: the over-long clip is cropped or skipped, never both ways
    assert {run[k] for k in long} == ({"cropped"} if task == "classification" else {"too_long"})
    assert {"missing", "non_finite", "corrupt", "padded"} <= set(run.values())


def test_check_data_fails_exactly_when_a_run_stops(manifests, tmp_path):
    cfg = config(manifests, tmp_path)
    with pytest.raises(AudioError) as e:
        run_verdicts(cfg)
    problems, _ = scan(cfg)
    first = next(p for p in problems if p.severity == "error")
    assert (e.value.path, e.value.reason) == (first.audio_filepath, first.reason)
    assert check_data(cfg) == 1
    assert check_data(config(manifests, tmp_path / "s", "data.on_bad_audio=skip")) == 0
