"""Manifest faults name the manifest, the line and the field; relative paths follow the manifest."""

from __future__ import annotations

import json
import logging

import pytest

from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.data.manifest import ManifestError, read_manifest, write_manifest
from tests.conftest import tone, write_wav


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _fault(path, **kw) -> ManifestError:
    with pytest.raises(ManifestError) as e:
        read_manifest(path, **kw)
    return e.value


def test_broken_json_line_names_manifest_and_line(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav"}, '{"audio_filepath": "b.wav"', "[1, 2]"])
    e = _fault(m)
    assert (e.path, e.line) == (str(m), 2) and "not valid JSON" in str(e) and f"{m}, line 2" in str(e)


def test_missing_required_field_names_the_field(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "label": "x"}, {"audio_filepath": "b.wav"}])
    e = _fault(m, required=("audio_filepath", "label"))
    assert (e.line, e.field) == (2, "label") and "field 'label'" in str(e)


@pytest.mark.parametrize(
    "row, field",
    [
        ({"audio_filepath": "a.wav", "duration": "long"}, "duration"),
        ({"audio_filepath": "a.wav", "duration": -1}, "duration"),
        ({"audio_filepath": "a.wav", "offset": -2}, "offset"),
        ({"audio_filepath": 17}, "audio_filepath"),
    ],
)
def test_bad_field_values_name_the_field(tmp_path, row, field):
    e = _fault(_jsonl(tmp_path / "m.jsonl", [row]))
    assert (e.line, e.field) == (1, field)


def test_csv_faults_name_the_physical_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('audio_filepath,label\na.wav,x\n"b\nc.wav",y\nd.wav,z,extra\n')
    e = _fault(m)
    assert e.line == 5 and "has 3 columns" in str(e)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert _fault(empty).line == 1


def test_non_utf8_line_is_named(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"audio_filepath": "a.wav"}\n{"audio_filepath": "\xff.wav"}\n')
    e = _fault(m)
    assert e.line == 2 and "UTF-8" in str(e)


def test_on_error_collects_every_fault_and_keeps_good_lines(tmp_path):
    rows = [{"audio_filepath": "a.wav"}, "{oops", {"label": "x"}, {"audio_filepath": "b.wav"}, "null"]
    faults = []
    entries = read_manifest(_jsonl(tmp_path / "m.jsonl", rows), on_error=faults.append)
    assert [e.line for e in entries] == [1, 4]
    assert [(f.line, f.field) for f in faults] == [(2, None), (3, "audio_filepath"), (5, None)]


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    m = _jsonl(
        tmp_path / "corpus" / "m.jsonl", [{"audio_filepath": "audio/a.wav"}, {"audio_filepath": "/abs/b.wav"}]
    )
    monkeypatch.chdir(tmp_path)  # not the manifest's folder
    a, b = read_manifest(m)
    assert a.audio_filepath == str(tmp_path / "corpus" / "audio" / "a.wav")
    assert b.audio_filepath == "/abs/b.wav"
    monkeypatch.setenv("HOME", str(tmp_path))
    (c,) = read_manifest(_jsonl(tmp_path / "h.jsonl", [{"audio_filepath": "~/x.wav"}]))
    assert c.audio_filepath == str(tmp_path / "x.wav")


def test_duplicates_warn_and_are_kept(tmp_path, caplog):
    m = _jsonl(
        tmp_path / "m.jsonl",
        [{"audio_filepath": "a.wav"}, {"audio_filepath": "b.wav"}, {"audio_filepath": "a.wav"}],
    )
    with caplog.at_level(logging.WARNING):
        entries = read_manifest(m)
    assert len(entries) == 3
    assert "line 3: duplicate of line 1" in caplog.text


def test_write_read_round_trip_with_relative_paths(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav", tone(0.2, 16000, 300.0), 16000)
    rows = [{"audio_filepath": str(tmp_path / "audio" / "a.wav"), "duration": 0.2, "label": "x"}]
    m = write_manifest(tmp_path / "out" / "m.jsonl", rows, relative_to=tmp_path / "out")
    assert json.loads(m.read_text())["audio_filepath"] == "../audio/a.wav"
    (e,) = read_manifest(m)
    assert e.audio_filepath.endswith("audio/a.wav") and e.label == "x" and e.duration == 0.2
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic write leaves no temp file


def test_label_unseen_in_training_names_manifest_line_and_field(tmp_path):
    audio = write_wav(tmp_path / "a.wav", tone(0.3, 16000, 300.0), 16000)
    train = _jsonl(tmp_path / "train.jsonl", [{"audio_filepath": str(audio), "label": "yes"}])
    val = _jsonl(
        tmp_path / "val.jsonl",
        [{"audio_filepath": str(audio), "label": "yes"}, {"audio_filepath": str(audio), "label": "maybe"}],
    )
    dm = AudioDataModule(train_manifest=str(train), val_manifest=str(val))
    with pytest.raises(ManifestError) as e:
        dm.setup()
    assert (e.value.path, e.value.line, e.value.field) == (str(val), 2, "label")
    assert "'maybe'" in str(e.value) and "val split" in str(e.value)
