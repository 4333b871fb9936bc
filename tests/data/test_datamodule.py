"""The datamodule on manifests (JSONL/CSV, relative paths) and its batches: padding, mono, rate, labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from asr_transfer.data.audio import AudioError
from asr_transfer.data.datamodule import AudioDataModule
from tests.conftest import tone, write_wav


def rows(path: str | None) -> list[dict]:
    return [] if path is None else [json.loads(line) for line in Path(path).read_text().splitlines()]


# ----- manifests ---------------------------------------------------------------------------------------
def _manifest_rows(root: Path) -> list[dict]:
    out = []
    for k, (label, freq) in enumerate([("a", 300.0), ("b", 900.0)] * 3):
        rel = f"audio/{label}_{k}.wav"
        write_wav(root / rel, tone(0.2 + 0.05 * k, 16000, freq, k), 16000)
        out.append({"audio_filepath": rel, "duration": 0.2 + 0.05 * k, "label": label, "speaker": f"s{k}"})
    return out


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    data = tmp_path / "corpus"
    m = data / "train.jsonl"
    m.parent.mkdir(parents=True)
    m.write_text("".join(json.dumps(r) + "\n" for r in _manifest_rows(data)))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the manifest's folder
    dm = AudioDataModule(train_manifest="../corpus/train.jsonl", sample_rate=16000)
    dm.setup()
    entries = dm.entries["train"]
    assert [e.audio_filepath for e in entries] == [
        str(data.resolve() / r["audio_filepath"]) for r in _manifest_rows(data)
    ]
    assert dm.datasets["train"][0]["wav"].shape == (int(0.2 * 16000),)


def test_csv_manifest_matches_jsonl(tmp_path):
    data_rows = _manifest_rows(tmp_path)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data_rows))
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audio_filepath", "duration", "label", "speaker"])
        w.writeheader()
        w.writerows(data_rows)
    got = {}
    for name in ("m.jsonl", "m.csv"):
        dm = AudioDataModule(train_manifest=str(tmp_path / name), sample_rate=16000)
        dm.setup()
        got[name] = [(e.audio_filepath, e.duration, e.label, e.speaker) for e in dm.entries["train"]]
        assert dm.labels == ["a", "b"]
    assert got["m.csv"] == got["m.jsonl"] and len(got["m.csv"]) == 6


def test_missing_audio_stops_with_path_and_reason(tmp_path):
    m = tmp_path / "train.jsonl"
    m.write_text(json.dumps({"audio_filepath": "gone.wav", "label": "a"}) + "\n")
    dm = AudioDataModule(train_manifest=str(m), sample_rate=16000)
    with pytest.raises(AudioError) as e:
        dm.setup()
    assert e.value.reason == "missing" and str(tmp_path / "gone.wav") in str(e.value)
    assert "train split" in str(e.value) and "line 1" in str(e.value)


# ----- batches ---------------------------------------------------------------------------------------
def test_batches_are_padded_mono_at_the_backbone_rate_with_consistent_labels(tmp_path):
    specs = [  # (label, seconds, file rate, channels)
        ("low", 0.30, 8000, 1),
        ("high", 0.50, 16000, 2),
        ("low", 0.20, 22050, 2),
        ("high", 0.45, 8000, 1),
    ]
    m_rows = []
    for k, (label, sec, sr, ch) in enumerate(specs):
        f = write_wav(tmp_path / f"{k}.wav", tone(sec, sr, 440.0, k, channels=ch), sr)
        m_rows.append({"audio_filepath": f.name, "label": label})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in m_rows))
    dm = AudioDataModule(train_manifest=str(tmp_path / "train.jsonl"), sample_rate=16000, batch_size=4)
    dm.setup()
    (batch,) = list(dm.train_dataloader())
    assert batch["wavs"].dim() == 2 and batch["wavs"].dtype == torch.float32  # (B, S): mono
    expected_len = {k: int(sec * 16000) for k, (_, sec, _, _) in enumerate(specs)}
    for row, idx in enumerate(batch["index"].tolist()):
        n = int(batch["lengths"][row])
        assert n == expected_len[idx]  # resampled to the backbone's rate
        assert batch["wavs"][row, n:].abs().sum() == 0  # padding is zeros beyond the length
        assert batch["wavs"][row, :n].abs().max() > 0.3
        assert dm.labels[int(batch["labels"][row])] == specs[idx][0]
    assert batch["wavs"].shape[1] == int(batch["lengths"].max())
    # duration was read from the header when the manifest had none
    assert [round(e.duration, 3) for e in dm.entries["train"]] == [s for _, s, _, _ in specs]
