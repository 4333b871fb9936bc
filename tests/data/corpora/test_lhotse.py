"""data=lhotse: cuts read as their stretch of the recording, recordings + supervisions, targets, faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_transfer.data.audio import load_audio
from asr_transfer.data.corpora.lhotse import LhotseCorpus
from asr_transfer.data.datamodule import AudioDataModule
from asr_transfer.data.targets import TextTargets
from tests.conftest import tone


@pytest.fixture
def long_recording(tmp_path) -> Path:
    """3 s at 16 kHz: a 440 Hz tone, then 1 s of 880 Hz, then 440 Hz again."""
    parts = [tone(1.0, 16000, 440.0, 0), tone(1.0, 16000, 880.0, 1), tone(1.0, 16000, 440.0, 2)]
    path = tmp_path / "rec.flac"
    sf.write(str(path), np.concatenate(parts), 16000, subtype="PCM_16")
    return path


def lhotse_files(tmp_path, rec_path):
    from lhotse import MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rec = Recording.from_file(rec_path, recording_id="rec")
    sups = [
        SupervisionSegment("a", "rec", 0.5, 0.5, text="HELLO", speaker="ann", custom={"emotion": "calm"}),
        SupervisionSegment("b", "rec", 1.0, 1.0, text="THERE", speaker="bob", custom={"emotion": "glad"}),
    ]
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "recordings.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(tmp_path / "supervisions.jsonl.gz")
    cut = MonoCut("c", 1.0, 1.0, 0, recording=rec, supervisions=[sups[1].with_offset(-1.0)])
    from lhotse import CutSet

    CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    return tmp_path / "recordings.jsonl.gz", tmp_path / "supervisions.jsonl.gz", tmp_path / "cuts.jsonl.gz"


def rows(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_a_segment_reads_only_its_stretch(long_recording):
    whole, _ = sf.read(str(long_recording), dtype="float32")
    got = load_audio(str(long_recording), 16000, offset=1.0, duration=1.0)
    torch.testing.assert_close(got, torch.from_numpy(whole[16000:32000]), rtol=0, atol=0)
    # at another rate: the stretch is resampled, not the file
    assert load_audio(str(long_recording), 8000, offset=0.5, duration=0.25).shape == (2000,)


def test_recordings_and_supervisions_and_cuts(tmp_path, long_recording):
    recs, sups, cuts = lhotse_files(tmp_path, long_recording)
    pair = {"recordings": str(recs), "supervisions": str(sups)}
    paths = LhotseCorpus(
        pair, test=str(cuts), label_field="emotion", manifest_dir=str(tmp_path / "m")
    ).prepare()
    assert rows(paths["train"]) == [
        {"audio_filepath": str(long_recording), "offset": 0.5, "duration": 0.5, "text": "HELLO", "speaker": "ann", "label": "calm"},
        {"audio_filepath": str(long_recording), "offset": 1.0, "duration": 1.0, "text": "THERE", "speaker": "bob", "label": "glad"},
    ]  # fmt: skip
    assert rows(paths["test"]) == [
        {"audio_filepath": str(long_recording), "offset": 1.0, "duration": 1.0, "text": "THERE", "speaker": "bob", "label": "glad"}
    ]  # fmt: skip
    # what the datamodule serves: the 880 Hz second of the recording, transcript as target
    dm = AudioDataModule(
        corpus=LhotseCorpus(str(cuts), manifest_dir=str(tmp_path / "m2")),
        targets=TextTargets(),
        sample_rate=16000,
    )
    dm.setup()
    wav = dm.datasets["train"][0]["wav"]
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    assert wav.shape == (16000,) and abs(int(spectrum.argmax()) - 880) <= 1


def test_faults_name_the_cut(tmp_path, long_recording):
    from lhotse import CutSet, MonoCut, Recording

    recs, sups, cuts = lhotse_files(tmp_path, long_recording)
    with pytest.raises(ValueError, match=r"supervision 'a': no supervision 'accent'"):
        LhotseCorpus({"recordings": str(recs), "supervisions": str(sups)}, label_field="accent",
                     manifest_dir=str(tmp_path / "m")).prepare()  # fmt: skip
    rec = Recording.from_file(long_recording, recording_id="rec").perturb_speed(1.1)
    CutSet.from_cuts([MonoCut("fast", 0, 1.0, 0, recording=rec)]).to_file(tmp_path / "fast.jsonl.gz")
    with pytest.raises(ValueError, match=r"cut 'fast': recording 'rec_sp1.1' has transforms"):
        LhotseCorpus(str(tmp_path / "fast.jsonl.gz"), manifest_dir=str(tmp_path / "m")).prepare()
    with pytest.raises(FileNotFoundError, match="data.corpus.val: .*nothing.jsonl.gz does not exist"):
        LhotseCorpus(str(cuts), val=str(tmp_path / "nothing.jsonl.gz"))
