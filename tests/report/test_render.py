"""The report renders for classification, CTC and sweep directories, and shows what each one left."""

from __future__ import annotations

import re

import pytest

from asr_transfer.report.align import align_words, word_errors
from asr_transfer.report.render import disagreement, swept_params, write_report
from tests.report.rundirs import classification_run, ctc_run, frames_run, probe_run, sweep_dir


def test_classification_report(tmp_path):
    html = write_report(classification_run(tmp_path / "run")).read_text()
    assert "Worst-classified test clips (4 of 4)" in html
    # misclassified first, most confidently wrong first: high_0 (p(true)=0.3) before mid_1 (0.3), then correct
    names = re.findall(r"<td>(\w+_\d)\.wav</td>", html)
    assert names[:2] == ["high_0", "mid_1"] and set(names[2:]) == {"low_2", "mid_3"}
    assert html.count("<audio ") == 4 and html.count("data:audio/wav;base64,") == 4
    # figures: learning curves, confusion, layer curve (no checkpoint: no weight chart)
    assert html.count("data:image/png;base64,") == 3
    assert "<td>0.6667</td>" in html  # F1 of mid: precision 2/2, recall 2/4
    assert "weighted_sum" in html and "test/acc" in html
    assert "[0.2500, 1.0000]" in html and "_ci95_" not in html  # the interval sits in its metric's row
    assert "http" not in html.replace("http://www.w3.org", "")  # nothing fetched from the network


def test_ctc_report_aligns_transcripts(tmp_path):
    html = write_report(ctc_run(tmp_path / "run")).read_text()
    assert "WER by utterance length" in html
    # the perfect transcript is not among the worst; the rest are, worst first ("zero" -> "oh": 100 %)
    assert html.count("<audio ") == 3
    assert html.index("utt_3.wav") < html.index("utt_1.wav")
    assert '<span class="ins">nine</span>' in html and '<span class="del">seven</span>' in html
    assert '<span class="sub">zero→oh</span>' in html


def test_frames_report_draws_segments_over_spectrograms(tmp_path):
    import base64
    import io

    from matplotlib.image import imread

    html = write_report(frames_run(tmp_path / "run")).read_text()
    assert "Segments: reference and predicted (3 of 3 test clips)" in html
    # most wrong first: the wrong label (100 % of labelled time), the missed segment (4 of 6 tenths), the perfect clip
    names = re.findall(r'alt="segments of (string_\d)\.wav"', html)
    assert names == ["string_1", "string_2", "string_0"]
    assert html.count("<audio ") == 3
    pngs = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="segments of', html)
    assert len(pngs) == 3
    for png in pngs:  # each decodes to a real image: the spectrogram and its two strips
        image = imread(io.BytesIO(base64.b64decode(png)), format="png")
        assert image.shape[0] > 200 and image.shape[1] > 500 and image[..., :3].std() > 0.05


def test_disagreement_is_the_share_of_labelled_time_that_differs():
    assert disagreement([[0.0, 1.0, "a"]], [[0.0, 1.0, "a"]]) == 0.0
    assert disagreement([[0.0, 1.0, "a"]], [[0.0, 1.0, "b"]]) == 1.0
    assert disagreement([[0.0, 0.5, "a"], [0.5, 1.0, "b"]], [[0.0, 0.5, "a"]]) == pytest.approx(0.5)
    assert disagreement([[0.2, 0.4, "a"]], []) == 1.0 and disagreement([], []) == 0.0


def test_sweep_report(tmp_path):
    html = write_report(sweep_dir(tmp_path / "sweep")).read_text()
    assert "ranked by val/acc" in html and html.count("<tr>") == 4  # header + 3 trials
    assert html.count("data:image/png;base64,") == 2  # val/acc vs optimizer.lr and vs head


def test_swept_params_keeps_only_varying_keys():
    trials = [{"overrides": "a=1 b=x"}, {"overrides": "a=2 b=x"}]
    assert swept_params(trials) == {"a": ["1", "2"]}


@pytest.mark.parametrize(
    "ref,hyp,errors",
    [("a b c", "a b c", 0), ("a b", "a x b", 1), ("a b c d", "a c d", 1), ("a b", "c d e", 3)],
)
def test_alignment_counts_match_edit_distance(ref, hyp, errors):
    assert word_errors(ref, hyp) == errors
    segs = align_words(ref, hyp)
    assert " ".join(s["ref"] for s in segs if s["ref"]) == ref
    assert " ".join(s["hyp"] for s in segs if s["hyp"]) == hyp


def test_missing_run_dir_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_dir"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither .*, run_dir=.*Fix: "):
        write_report(tmp_path / "empty")


def test_probe_run_shows_the_l2_path(tmp_path):
    html = write_report(probe_run(tmp_path / "run")).read_text()
    assert "along the L2 grid" in html and html.count("data:image/png;base64,") == 4
