"""task=frames: frame targets on each backbone's frame grid, smoothing and decoding, event F1 on
hand-made segments, DER against hand-computed values (pyannote.metrics), bad segments named by
manifest and line, and train -> eval -> predict agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asr_transfer.data.manifest import read_manifest
from asr_transfer.tasks.frames import FramesTask, SegmentTargets
from asr_transfer.tasks.segments import (
    decode,
    diarization_error_rate,
    event_counts,
    f1,
    frame_counts,
    frame_targets,
    macro_f1_of_counts,
    smooth,
)
from tests.presets import BACKBONES
from tests.tasks.runs import best_checkpoint, eval_run, predict_test_clips, read_test_rows, train_run

# (backbone, samples of audio one frame's window spans): Whisper's frame is two 160-sample mel hops
# (a stride-2 conv), wav2vec2's the conv stack's 400-sample receptive field at a 320-sample stride
GEOMETRY = {"whisper": 320, "ta_wav2vec2_base": 400}


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_segment_edges_land_on_the_backbones_frames(name):
    backbone = BACKBONES[name]()
    samples = 16000
    with torch.no_grad():
        hidden, lengths = backbone(torch.randn(1, samples), torch.tensor([samples]))
    frames = hidden[-1].shape[1]
    assert frames == int(lengths[0]) == int(backbone.frame_lengths(torch.tensor([samples]))[0])
    hop = backbone.downsample_rate / backbone.sample_rate
    assert hop == 0.02
    window = GEOMETRY[name]
    for start, end in ((0.5, 1.0), (0.505, 0.77), (0.1234, 0.3)):
        y = frame_targets(torch.tensor([[start, end, 1.0]]), frames, hop)
        # a frame is labelled when the middle of the audio it sees (its window's centre, to within 40
        # samples: 2.5 ms) falls inside the segment
        centre = torch.arange(frames) * backbone.downsample_rate + window / 2
        inside = (centre >= start * samples) & (centre < end * samples)
        assert (y == 1).sum() >= inside.sum() - 1 and ((y == 1) ^ inside).sum() <= 1
        first = int((y == 1).nonzero()[0])
        assert (
            abs(first * backbone.downsample_rate + window / 2 - start * samples) <= backbone.downsample_rate
        )


def test_smoothing_and_decoding():
    labels = ["background", "a", "b"]
    frames = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 2, 0, 0, 2, 2, 2, 2, 0])
    probs = np.eye(3)[frames]
    assert decode(frames, 0.1, labels) == [(0.2, 0.5, "a"), (0.6, 0.9, "a"), (1.0, 1.1, "b"), (1.3, 1.7, "b")]
    assert decode(frames, 0.1, labels, min_duration=0.3) == [
        (0.2, 0.5, "a"),
        (0.6, 0.9, "a"),
        (1.3, 1.7, "b"),
    ]
    # a 3-frame median fills the one-frame gap between the "a" runs and removes the lone "b"
    assert decode(smooth(probs, 3), 0.1, labels) == [(0.2, 0.9, "a"), (1.3, 1.7, "b")]


def test_event_f1_on_hand_made_segments():
    ref = [(0.0, 1.0, "a"), (2.0, 3.0, "b"), (4.0, 8.0, "a")]
    assert event_counts(ref, ref) == (3, 0, 0)
    hyp = [
        (0.15, 1.1, "a"),  # onset and offset within 0.2 s: a hit
        (2.3, 3.0, "b"),  # onset 0.3 s late: a false alarm, and its reference a miss
        (4.1, 7.3, "a"),  # offset 0.7 s early, within 20 % of the 4 s event (0.8 s): a hit
        (4.0, 8.0, "b"),  # the wrong label
    ]
    assert event_counts(ref, hyp) == (2, 2, 1)
    assert f1(2, 2, 1) == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # each event matches once: two hypotheses on one reference give one hit and one false alarm
    assert event_counts([(0.0, 1.0, "a")], [(0.0, 1.0, "a"), (0.1, 1.0, "a")]) == (1, 1, 0)
    assert event_counts([], [(0.0, 1.0, "a")]) == (0, 1, 0)


def test_frame_counts_give_sklearns_macro_f1_and_accuracy():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    clips = [
        (rng.integers(0, 4, n), rng.integers(0, 4, n)) for n in (30, 7, 51)
    ]  # (pred, ref); class 4 unused
    counts = np.array([frame_counts(p, y, 5) for p, y in clips])  # (clips, 3, classes)
    pred, ref = np.concatenate([p for p, _ in clips]), np.concatenate([y for _, y in clips])
    assert macro_f1_of_counts(counts[:, 0], counts[:, 1], counts[:, 2]) == pytest.approx(
        f1_score(ref, pred, average="macro")
    )
    rows = [{"frames": c.tolist(), "events": [1, 0, 2]} for c in counts]
    m = FramesTask.clip_metrics(rows)
    assert m["frame_f1"].value() == pytest.approx(f1_score(ref, pred, average="macro"))
    assert m["frame_acc"].value() == pytest.approx(accuracy_score(ref, pred))
    assert m["event_f1"].value() == pytest.approx(f1(3, 0, 6))
    # a resample of clips [0, 0, 2] is the metric of those clips' frames
    twice = (
        np.concatenate([clips[0][0], clips[0][0], clips[2][0]]),
        np.concatenate([clips[0][1], clips[0][1], clips[2][1]]),
    )
    assert float(m["frame_f1"].at(np.array([0, 0, 2]))) == pytest.approx(
        f1_score(twice[1], twice[0], average="macro")
    )


def test_val_chooses_the_decoding_with_the_best_event_f1():
    from types import SimpleNamespace

    # "a" from 0.2 to 0.8 s, with a one-frame dropout at 0.5 s and a one-frame blip at 1.0 s (0.1 s frames)
    frames = np.array([0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0])
    clip = (0, np.eye(2)[frames], frames, [(0.2, 0.8, "a")])
    task = SimpleNamespace(clips=[clip], hop=0.1, labels=["background", "a"], tolerance=(0.2, 0.2),
                           decoding=torch.zeros(2, dtype=torch.float64))  # fmt: skip
    # no smoothing: three events, none within tolerance; dropping short ones leaves two halves; a 3-frame
    # median joins the halves and removes the blip: the one event, a hit
    task.grid = [(1, 0.0), (1, 0.2), (3, 0.0), (3, 0.2)]
    FramesTask.choose_decoding(task)
    assert task.decoding.tolist() == [3.0, 0.0]  # the first of the two perfect pairs in grid order
    task.grid = [(1, 0.0), (1, 0.2)]  # nothing scores: the first pair
    FramesTask.choose_decoding(task)
    assert task.decoding.tolist() == [1.0, 0.0]


def test_der_on_hand_made_annotations():
    ref = [(0.0, 5.0, "alice"), (5.0, 10.0, "bob")]
    assert diarization_error_rate([(ref, [(0.0, 5.0, "X"), (5.0, 10.0, "Y")])]) == 0.0  # names are mapped
    # 2 s of bob missed, 1 s of alice given to bob's cluster (confusion), 1 s of false alarm after the end
    hyp = [(0.0, 4.0, "X"), (4.0, 8.0, "Y"), (10.0, 11.0, "Y")]
    assert diarization_error_rate([(ref, hyp)]) == pytest.approx((2 + 1 + 1) / 10)
    # summed over clips: errors and reference time add up
    assert diarization_error_rate([(ref, hyp), (ref, ref)]) == pytest.approx(4 / 20)


def test_bad_segments_name_manifest_line_and_field(tmp_path):
    good = {
        "audio_filepath": "a.wav",
        "duration": 2.0,
        "segments": [{"start": 0.1, "end": 0.5, "label": "x"}],
    }
    bad = [
        [{"start": 0.1, "end": 2.5, "label": "x"}],  # outside the clip
        [{"start": 0.1, "end": 0.5, "label": "x"}, {"start": 0.4, "end": 0.9, "label": "x"}],  # overlap
        [{"start": 0.1, "end": 0.5, "label": ""}],  # empty label
        [{"start": 0.5, "end": 0.1, "label": "x"}],  # end before start
        "0.1-0.5",
    ]
    rows = [good, {**good, "segments": []}] + [{**good, "segments": s} for s in bad]
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({**r, "audio_filepath": f"{k}.wav"}) + "\n" for k, r in enumerate(rows))
    )
    targets = SegmentTargets()
    faults = targets.fit({"train": read_manifest(tmp_path / "m.jsonl")})
    assert [f.line for f in faults] == [3, 4, 5, 6, 7] and all(f.field == "segments" for f in faults)
    assert "after the clip's end" in str(faults[0]) and "overlaps" in str(faults[1])
    assert targets.labels == ["background", "x"]


def test_train_eval_predict_agree(tmp_path, tone_corpus):
    run, metrics = train_run(tmp_path, tone_corpus, "frames", "head=frame_linear", "~probe", "trainer.max_epochs=3",
                             "optimizer.lr=0.01", "task.speakers=true")  # fmt: skip
    assert {"test/frame_f1", "test/frame_acc", "test/event_f1", "test/der"} <= set(metrics)
    rows = read_test_rows(run, "test_segments.jsonl")
    counts = np.array(
        [
            event_counts([tuple(s) for s in r["reference"]], [tuple(s) for s in r["predicted"]])
            for r in rows.values()
        ]
    )
    assert metrics["test/event_f1"] == pytest.approx(f1(*counts.sum(0).tolist()), abs=1e-6)
    # intervals over test clips, from the rows' per-clip counts, which give the logged values back
    clip = FramesTask.clip_metrics(sorted(rows.values(), key=lambda r: r["index"]))
    for name in ("frame_f1", "frame_acc", "event_f1"):
        assert clip[name].value() == pytest.approx(metrics[f"test/{name}"], abs=1e-5)
        assert (
            metrics[f"test/{name}_ci95_low"] <= metrics[f"test/{name}"] <= metrics[f"test/{name}_ci95_high"]
        )
    # the decoding the best epoch's val chose (from the task config's grid) decoded test; the checkpoint keeps it
    chosen = [metrics["decoding/median_frames"], metrics["decoding/min_duration"]]
    assert chosen[0] in (1, 3, 5, 9) and chosen[1] in (0.0, 0.05, 0.1, 0.2)
    ckpt = best_checkpoint(run)
    state = torch.load(ckpt, weights_only=True)
    assert state["state_dict"]["decoding"].tolist() == pytest.approx(chosen)
    assert state["asr_transfer"]["labels"] == [
        "background",
        "high",
        "low",
        "mid",
    ]
    again = eval_run(tmp_path, ckpt)
    assert again["test/frame_f1"] == pytest.approx(metrics["test/frame_f1"], abs=1e-6)
    assert again["test/event_f1"] == pytest.approx(metrics["test/event_f1"], abs=1e-6)
    predicted = predict_test_clips(tmp_path, ckpt, tone_corpus)
    assert predicted.keys() == rows.keys()
    for path, row in rows.items():
        assert predicted[path]["segments"] == row["predicted"]
