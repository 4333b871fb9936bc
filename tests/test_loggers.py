"""logger=wandb without an API key: an offline run whose records hold the metrics and the extras."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from asr_transfer.loggers import offline_reason, sweep_group, wandb_logger
from asr_transfer.plots import per_class_rows
from tests.conftest import TINY_WHISPER, compose_train, tone_overrides

wandb = pytest.importorskip("wandb")


def read_offline_run(run_file: Path, wait_s: float = 0.0) -> dict:
    """Parse a ``run-<id>.wandb`` transaction log (LevelDB log framing of protobuf ``Record``s).

    wandb >= 0.19 ships no Python reader; the framing is: a 7-byte header (``:W&B``, magic, version),
    then 32 KiB blocks of chunks ``crc32 (4) | length (2, LE) | type (1) | data``, type 1 = a whole
    record, 2/3/4 = first/middle/last piece of one. wandb's service writes the file after
    ``wandb.finish()`` returns: ``wait_s`` polls until the run's closing ``exit`` record is there.
    """
    deadline = time.monotonic() + wait_s
    while True:
        run = _parse(run_file.read_bytes())
        if run["finished"] or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def _parse(data: bytes) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    if data[:4] != b":W&B":
        return {"finished": False}
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: zero padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
    out = {"config": {}, "summary": {}, "history": [], "group": None, "finished": False}
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            out["history"].append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out["summary"], item)
        elif kind == "config":
            for item in rec.config.update:
                _put(out["config"], item)
        elif kind == "run":
            out["group"] = rec.run.run_group or out["group"]
        elif kind == "exit":
            out["finished"] = True
    return out


def _put(d: dict, item) -> None:
    """Items carry either ``key`` or a ``nested_key`` path (images, tables): rebuild the nesting."""
    path = list(item.nested_key) or [item.key]
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = json.loads(item.value_json)


@pytest.fixture
def no_wandb_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    if wandb.run is not None:
        wandb.finish()


def test_offline_when_no_key(no_wandb_key, tmp_path, monkeypatch):
    assert "no W&B API key" in offline_reason()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    assert "unreachable" in offline_reason(timeout=0.5)
    monkeypatch.setenv("WANDB_MODE", "offline")
    lg = wandb_logger(save_dir=str(tmp_path), log_model=True)
    assert lg._offline and lg._log_model is False  # artifacts need online mode: dropped, not crashed
    assert sweep_group() is None  # no Hydra multirun here


def test_wandb_offline_run_holds_metrics_confusion_and_layer_weights(
    no_wandb_key, tmp_path, tone_corpus, caplog
):
    out = tmp_path / "run"
    cfg = compose_train(
        [
            *tone_overrides(tone_corpus, tmp_path / "cache"),
            *TINY_WHISPER,
            "logger=wandb",
            "~probe",  # train/loss and per-epoch layer weights come from minibatch training
            "trainer.max_epochs=3",
            "trainer.log_every_n_steps=1",
            "optimizer.lr=0.01",
        ],
        out,
    )
    from asr_transfer.pipeline.train import train

    with caplog.at_level("INFO", logger="asr_transfer"):
        train(cfg)
    wandb.finish()  # a script's exit does this; in-process it flushes the run file
    metrics = json.loads((out / "metrics.json").read_text())

    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "the offline run lives inside the run directory"
    assert any("W&B runs offline: no W&B API key" in r.message for r in caplog.records)
    assert any(f"wandb sync {runs[0].parent}" in r.message for r in caplog.records)

    run = read_offline_run(runs[0], wait_s=120)
    assert run["finished"], f"{runs[0]}: no exit record after 120 s"
    keys = set().union(*run["history"])
    for key in (
        "train/loss",
        "val/acc",
        "val/loss",
        "test/acc",
        "test/f1",
        "layer_weights/0",
        "lr-AdamW/head",
    ):
        assert key in keys, f"{key} missing from the W&B history ({sorted(keys)})"
    for key in ("test/acc", "test/f1", "val/acc"):
        assert key in run["summary"]
    assert run["summary"]["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)

    # the confusion matrix: an image file and a per-class table matching confusion_matrix.json
    conf_img = next(h["test/confusion_matrix"] for h in run["history"] if "test/confusion_matrix" in h)
    assert conf_img["_type"] == "image-file" and conf_img["format"] == "png"
    assert (runs[0].parent / "files" / conf_img["path"]).stat().st_size > 1000
    saved = json.loads((out / "confusion_matrix.json").read_text())
    table = next(h["test/per_class"] for h in run["history"] if "test/per_class" in h)
    table_file = json.loads((runs[0].parent / "files" / table["path"]).read_text())
    assert [r[0] for r in table_file["data"]] == saved["labels"] == ["high", "low", "mid"]
    expected = per_class_rows(saved["matrix"], saved["labels"])
    assert [r[1] for r in table_file["data"]] == [e["support"] for e in expected] == [4, 4, 4]

    # layer weights: one value per hidden state (tiny Whisper: 2 layers + input), summing to one
    final = [h for h in run["history"] if "layer_weights/0" in h][-1]
    weights = [final[f"layer_weights/{i}"] for i in range(3)]
    assert "layer_weights/3" not in final and sum(weights) == pytest.approx(1.0, abs=1e-4)
    assert "layer_weights/chart_table" in keys
    # the resolved Hydra config went to W&B as the run config
    assert run["config"]["backbone"]["_target_"].endswith("WhisperEncoderBackbone")
    assert run["config"]["data"]["train_manifest"] == str(tone_corpus["train"])
