"""FSDD digit strings: deterministic, speaker-disjoint, with gaps between digits."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf

from asr_transfer.data.corpora.fsdd_digits import DIGIT_WORDS, FSDDDigits
from tests.conftest import tone, write_wav


# ----- digit strings --------------------------------------------------------------------------------
def fake_fsdd(root: Path, speakers=("ann", "bob", "cat", "dan"), per_digit: int = 2) -> Path:
    """FSDD-named 8 kHz tones: ``{digit}_{speaker}_{index}.wav``, a length per (digit, index)."""
    rec = root / "recordings"
    for s, spk in enumerate(speakers):
        for d in range(10):
            for i in range(per_digit):
                seconds = 0.2 + 0.01 * d + 0.005 * i
                write_wav(
                    rec / f"{d}_{spk}_{i}.wav", tone(seconds, 8000, 200 + 100 * d + 10 * s, seed=i), 8000
                )
    return rec


def _digits(tmp: Path, root: Path, seed: int = 0) -> FSDDDigits:
    return FSDDDigits(
        root=str(root),
        val_speakers=["cat"],
        test_speakers=["dan"],
        train_per_speaker=6,
        eval_per_speaker=3,
        digits_seed=seed,
        audio_dir=str(tmp / "audio"),
        manifest_dir=str(tmp / "manifests"),
    )


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_digit_strings_deterministic_speaker_disjoint_and_gapped(tmp_path):
    root = tmp_path / "fsdd"
    rec = fake_fsdd(root)
    a = _digits(tmp_path / "a", root).prepare()
    b = _digits(tmp_path / "b", root).prepare()
    for split in ("train", "val", "test"):
        ra, rb = _rows(a[split]), _rows(b[split])
        assert [r["text"] for r in ra] == [r["text"] for r in rb]
        for x, y in zip(ra, rb):  # same audio, byte for byte, from a fresh build
            assert Path(x["audio_filepath"]).read_bytes() == Path(y["audio_filepath"]).read_bytes()
    speakers = {s: {r["speaker"] for r in _rows(a[s])} for s in a}
    assert speakers == {"train": {"ann", "bob"}, "val": {"cat"}, "test": {"dan"}}
    assert len(_rows(a["train"])) == 12 and len(_rows(a["test"])) == 3

    for r in _rows(a["train"]):
        words = r["text"].split()
        assert 2 <= len(words) <= 7 and words == [DIGIT_WORDS[int(d)] for d in r["digits"]]
        # every source clip of this speaker has a known length; the rest is 50-300 ms gaps
        speech = 0.0
        for d in r["digits"]:
            lens = [sf.info(str(p)).duration for p in rec.glob(f"{d}_{r['speaker']}_*.wav")]
            speech += min(lens)
        gaps = r["duration"] - speech
        assert 0.05 * (len(words) - 1) - 0.02 <= gaps <= 0.3 * (len(words) - 1) + 0.02
        assert sf.info(r["audio_filepath"]).samplerate == 8000

    c = _digits(tmp_path / "c", root, seed=1).prepare()
    assert [r["text"] for r in _rows(c["train"])] != [r["text"] for r in _rows(a["train"])]


def test_rows_carry_every_tasks_targets_from_the_plan(tmp_path):
    root = tmp_path / "fsdd"
    fake_fsdd(root)
    paths = _digits(tmp_path / "a", root).prepare()
    for r in _rows(paths["train"]):
        assert r["labels"] == sorted(set(r["digits"])) and r["target"] == len(r["digits"])
        segs = r["segments"]
        assert [s["label"] for s in segs] == list(r["digits"])
        wav, sr = sf.read(r["audio_filepath"])
        assert segs[0]["start"] == 0 and segs[-1]["end"] == len(wav) / sr
        for a, b in zip(segs, segs[1:]):  # gaps are digital silence, segments are the tones
            assert 0.05 - 1e-3 <= b["start"] - a["end"] <= 0.3 + 1e-3
            gap = wav[int(round(a["end"] * sr)) : int(round(b["start"] * sr))]
            assert len(gap) and abs(gap).max() == 0
            assert abs(wav[int(round(b["start"] * sr)) : int(round(b["start"] * sr)) + 20]).max() > 0


def test_mixed_eval_splits_hold_both_unseen_speakers(tmp_path):
    root = tmp_path / "fsdd"
    fake_fsdd(root)
    plain = _digits(tmp_path / "a", root)
    mixed = FSDDDigits(**{**vars_of(plain), "mix_eval_speakers": True})
    a, m = plain.prepare(), mixed.prepare()
    assert (
        {r["speaker"] for r in _rows(m["val"])} == {r["speaker"] for r in _rows(m["test"])} == {"cat", "dan"}
    )
    pooled = sorted(r["audio_filepath"] for s in ("val", "test") for r in _rows(a[s]))
    assert sorted(r["audio_filepath"] for s in ("val", "test") for r in _rows(m[s])) == pooled  # same audio
    assert not {r["audio_filepath"] for r in _rows(m["val"])} & {
        r["audio_filepath"] for r in _rows(m["test"])
    }
    assert _rows(m["train"]) == _rows(a["train"])


def vars_of(corpus: FSDDDigits) -> dict:
    return dict(
        root=corpus.root,
        val_speakers=corpus.val_speakers,
        test_speakers=corpus.test_speakers,
        train_per_speaker=6,
        eval_per_speaker=3,
        audio_dir=str(corpus.audio_dir),
        manifest_dir=str(corpus.manifest_dir),
    )
