"""Feature shards: any shard size reads back the same, damage is detected and re-encoded, a kill loses one shard."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tests.conftest import ROOT, run_python
from tests.test_cache import audio_dm, backbone, stored

ROW_BYTES = 3 * 32 * 4  # one frame: 3 hidden states x 32 values in float32 (the tiny Whisper)


def features_of(fdm) -> dict[str, torch.Tensor]:
    return {
        e.audio_filepath: ds[j]["features"] for ds in fdm.datasets.values() for j, e in enumerate(ds.entries)
    }


def fail_at_call(bb, n: int, fail) -> None:
    """The backbone's ``n``-th forward call runs ``fail()`` instead: a pass that dies in the middle."""
    calls, real = [0], bb.forward

    def forward(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            fail()
        return real(*a, **k)

    bb.forward = forward


@pytest.fixture
def reference(tone_corpus, tmp_path):
    """Frames of every clip, all in one shard."""
    _, fdm, fs, bb = stored(tone_corpus, tmp_path / "one", pooled=False)
    assert all(len(ds.shard_names) == 1 for ds in fdm.datasets.values())  # every split in one shard
    return features_of(fdm), bb


def test_any_shard_size_reads_back_the_same_clips(tone_corpus, tmp_path, reference):
    expected, bb = reference
    first = audio_dm(tone_corpus).datasets["train"].entries[0]
    # 1 byte: every clip closes its shard (each clip at a shard edge); a few frames: clips straddle edges
    for shard_bytes in (1, 7 * ROW_BYTES, 40 * ROW_BYTES):
        _, fdm, _, _ = stored(
            tone_corpus, tmp_path / str(shard_bytes), pooled=False, bb=bb, shard_mb=shard_bytes / 1e6
        )
        got = features_of(fdm)
        assert sorted(got) == sorted(expected)
        for path, x in got.items():
            torch.testing.assert_close(x, expected[path], atol=0, rtol=0)
        if shard_bytes == 1:
            assert len(fdm.datasets["train"].shard_names) == len(fdm.datasets["train"])  # one clip per shard
    assert first.audio_filepath in expected
    train = fdm.datasets["train"]
    assert len(train.shard_names) > 1  # a split over many shards


def _shards(fs) -> list:
    from pathlib import Path

    return sorted(Path(fs.folder).glob("r*.bin"))


@pytest.mark.parametrize("damage", ["corrupt", "partial"])
def test_a_damaged_shard_is_encoded_again(tone_corpus, tmp_path, reference, damage, caplog):
    expected, bb = reference
    kw = {"pooled": False, "bb": bb, "shard_mb": 40 * ROW_BYTES / 1e6}
    _, _, fs, _ = stored(tone_corpus, tmp_path / "s", **kw)
    shard = _shards(fs)[1]
    clips_in_it = len(json.loads(shard.with_suffix(".json").read_text())["clips"])
    data = bytearray(shard.read_bytes())
    if damage == "corrupt":
        data[len(data) // 2] ^= 0xFF  # same size, one flipped byte: only the checksum sees it
    else:
        data = data[: len(data) - 10]  # a truncated copy
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="asr_transfer.features.store"):
        _, fdm, fs2, _ = stored(tone_corpus, tmp_path / "s", **kw)
    assert f"is {damage}" in caplog.text
    assert fs2.encoded == [clips_in_it] and not shard.exists()
    for path, x in features_of(fdm).items():
        torch.testing.assert_close(x, expected[path], atol=0, rtol=0)


KILLED_PASS = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from tests.test_cache import audio_dm, backbone
from tests.test_feature_shards import fail_at_call
from asr_transfer.features import FeatureStore
corpus = dict(train={train!r}, val={val!r}, test={test!r})
dm, bb = audio_dm(corpus), backbone()
fail_at_call(bb, 5, lambda: os.kill(os.getpid(), signal.SIGKILL))  # no cleanup, no handler: a power cut
FeatureStore({folder!r}, dtype="float32", shard_mb={shard_mb}, max_batch_size=4).run(dm.datasets, bb, [0, 1, 2], False, build=None)
"""


def test_a_killed_pass_resumes_at_the_first_unfinished_shard(tone_corpus, tmp_path, reference):
    expected, bb = reference
    shard_mb = 25 * ROW_BYTES / 1e6  # about two clips per shard: batches of four commit shards mid-batch
    folder = tmp_path / "k" / "features"
    script = KILLED_PASS.format(
        root=str(ROOT), folder=str(folder), shard_mb=shard_mb, **{k: str(v) for k, v in tone_corpus.items()}
    )
    proc = run_python("-c", script, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL
    spec = next(p for p in folder.iterdir() if p.is_dir())
    committed = sum(len(json.loads(p.read_text())["clips"]) for p in spec.glob("r*.json"))
    assert 8 <= committed < 48  # four batches of four: some shards committed, the pass unfinished
    largest = max(len(json.loads(p.read_text())["clips"]) for p in spec.glob("r*.json"))

    _, fdm, fs, _ = stored(
        tone_corpus, tmp_path / "k", pooled=False, bb=bb, shard_mb=shard_mb, max_batch_size=4
    )
    assert fs.encoded == [48 - committed]
    assert committed + fs.encoded[0] <= 48 + 4 + largest  # at most the lost shard (and its batch) twice
    for path, x in features_of(fdm).items():
        torch.testing.assert_close(x, expected[path], atol=0, rtol=0)  # the same as an uninterrupted pass


def test_two_loader_workers_read_what_one_process_reads(tone_corpus, tmp_path, reference):
    _, bb = reference
    _, fdm, _, _ = stored(tone_corpus, tmp_path / "w", pooled=False, bb=bb, shard_mb=40 * ROW_BYTES / 1e6)
    serial = list(fdm.loader("test"))
    fdm.num_workers = 2
    parallel = list(fdm.loader("test"))
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel):
        assert a["index"].tolist() == b["index"].tolist()
        torch.testing.assert_close(a["features"], b["features"], atol=0, rtol=0)


def test_a_failed_pass_leaves_no_half_written_shard(tone_corpus, tmp_path):
    from asr_transfer.features import FeatureStore

    dm, bb = audio_dm(tone_corpus), backbone()

    def interrupt():
        raise KeyboardInterrupt

    fail_at_call(bb, 2, interrupt)
    stage = FeatureStore(str(tmp_path / "f"), dtype="float32", max_batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        stage.run(dm.datasets, bb, [0, 1, 2], False, build=None)
    assert not list((tmp_path / "f").rglob(".*.tmp"))
