"""CTC task: loss guards, heads, digit-string corpus, LibriSpeech manifests, train -> eval -> predict."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from asr_transfer.data.corpora.fsdd_digits import DIGIT_WORDS, FSDDDigits
from asr_transfer.data.corpora.librispeech import LibriSpeech
from asr_transfer.heads.frames import CTCBLSTMHead, CTCLinearHead
from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.predict import run as run_predict
from asr_transfer.pipeline.train import train
from asr_transfer.tasks.ctc import ctc_frames_needed, ctc_loss_fp32
from tests.conftest import FSDD_DIR, TINY_WHISPER, WHISPER_DIR, compose_train, needs_shared, tone, write_wav
from tests.fakes import fake_librispeech

WORD_FREQS = {"low": 300.0, "mid": 800.0, "high": 1800.0}


# ----- loss -----------------------------------------------------------------------------------------
def test_frames_needed_counts_blanks_between_repeats():
    targets = torch.tensor([[1, 1, 2, 2], [3, 0, 0, 0], [4, 4, 4, 0]])
    lengths = torch.tensor([4, 1, 3])
    assert ctc_frames_needed(targets, lengths).tolist() == [6, 1, 5]


def test_too_short_and_empty_clips_are_skipped_not_nan():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    targets = torch.tensor([[1, 2, 3], [1, 1, 1], [2, 0, 0]])
    target_lengths = torch.tensor([3, 3, 1])
    frame_lengths = torch.tensor([6, 4, 0])  # clip 1 needs 5 frames, clip 2 has none
    loss, kept = ctc_loss_fp32(logits, frame_lengths, targets, target_lengths)
    assert kept.tolist() == [True, False, False]
    ref = F.ctc_loss(
        logits[:1].log_softmax(-1).transpose(0, 1), targets[:1], frame_lengths[:1], target_lengths[:1]
    )
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-6)
    none, kept = ctc_loss_fp32(logits[1:], frame_lengths[1:], targets[1:], target_lengths[1:])
    assert none is None and not kept.any()


def test_ctc_loss_finite_and_float32_under_bf16_autocast():
    torch.manual_seed(0)
    head = CTCLinearHead(16, 12, dropout=0.0)
    frames = torch.randn(4, 50, 16) * 30  # large logits: where half-precision log-softmax/CTC break
    lengths = torch.tensor([50, 40, 30, 20])
    targets = torch.randint(1, 12, (4, 10))
    target_lengths = torch.tensor([10, 8, 6, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(frames, lengths)
        assert logits.dtype == torch.bfloat16
        loss, _ = ctc_loss_fp32(logits, lengths, targets, target_lengths)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref, _ = ctc_loss_fp32(logits.float(), lengths, targets, target_lengths)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)  # same numbers as float32 on the bf16 logits


# ----- heads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_cls", [CTCLinearHead, CTCBLSTMHead])
def test_frame_heads_shape_and_padding_invariance(head_cls):
    torch.manual_seed(0)
    kwargs = {"hidden_size": 8} if head_cls is CTCBLSTMHead else {}
    head = head_cls(input_size=6, vocab_size=9, **kwargs).eval()
    a, b = torch.randn(1, 7, 6), torch.randn(1, 4, 6)
    batch = torch.zeros(2, 7, 6)
    batch[0], batch[1, :4] = a[0], b[0]
    out = head(batch, torch.tensor([7, 4]))
    assert out.shape == (2, 7, 9)
    # the short clip's frames do not depend on its padding (packed BiLSTM)
    torch.testing.assert_close(out[1, :4], head(b, torch.tensor([4]))[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], head(a, torch.tensor([7]))[0], atol=1e-5, rtol=1e-5)


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
        str(root),
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


# ----- LibriSpeech layout ---------------------------------------------------------------------------
@pytest.mark.parametrize("librilight,train_n", [(None, 2), ("10min", 1), ("1h", 2), ("10h", 3)])
def test_librispeech_and_librilight_manifests(tmp_path, librilight, train_n):
    fake_librispeech(tmp_path / "ls")
    corpus = LibriSpeech(
        str(tmp_path / "ls"),
        train_subsets=["dev-clean"],
        val_subsets=["dev-clean"],
        test_subsets=["test-clean"],
        librilight=librilight,
        download=False,
        manifest_dir=str(tmp_path / "m"),
    )
    paths = corpus.prepare()
    train, test = _rows(paths["train"]), _rows(paths["test"])
    assert len(train) == train_n and len(_rows(paths["val"])) == 2
    assert test == [
        {
            "audio_filepath": str(tmp_path / "ls/LibriSpeech/test-clean/61/70968/61-70968-0000.flac"),
            "duration": pytest.approx(0.1),
            "text": "HE BEGAN A CONFUSED COMPLAINT",
            "speaker": "61",
            "chapter": 70968,
            "subset": "test-clean",
        }
    ]
    assert all(Path(r["audio_filepath"]).is_file() for r in train)


def test_librispeech_missing_subset_says_what_to_do(tmp_path):
    corpus = LibriSpeech(
        str(tmp_path), ["train-clean-100"], [], [], download=False, manifest_dir=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match="data.corpus.download=true"):
        corpus.prepare()


# ----- end to end (tiny random Whisper, generated "word" audio) -------------------------------------
@pytest.fixture
def word_corpus(tmp_path: Path) -> dict[str, Path]:
    """Utterances of 1-3 tone "words" (low/mid/high) with silences; transcripts like "MID LOW."."""
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        rows = []
        for k in range(n):
            words = [rng.choice(list(WORD_FREQS)) for _ in range(rng.randint(1, 3))]
            parts = []
            for w in words:
                parts += [tone(0.25, 16000, WORD_FREQS[w], seed=k), np.zeros(1600, np.float32)]
            rel = Path("audio") / f"{split}_{k}.wav"
            write_wav(tmp_path / rel, np.concatenate(parts), 16000)
            rows.append({"audio_filepath": str(rel), "text": " ".join(words).upper() + "."})
        out[split] = tmp_path / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def ctc_overrides(corpus: dict[str, Path], cache_dir: Path) -> list[str]:
    return [
        "data=manifest",
        f"data.train_manifest={corpus['train']}",
        f"data.val_manifest={corpus['val']}",
        f"data.test_manifest={corpus['test']}",
        f"paths.cache_dir={cache_dir}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        *TINY_WHISPER,
        "task=ctc",
        "head=ctc_blstm",
        "head.hidden_size=16",
        "optimizer.lr=0.01",
    ]


def test_train_eval_predict_agree(tmp_path, word_corpus):
    out = tmp_path / "run"
    cfg = compose_train([*ctc_overrides(word_corpus, tmp_path / "cache"), "trainer.max_epochs=2"], out)
    assert cfg.optimized_metric == "val/wer" and cfg.callbacks.model_checkpoint.mode == "min"
    assert train(cfg) is not None
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test/wer", "test/cer", "test/loss", "val/wer", "val/cer"):
        assert key in metrics and metrics[key] >= 0.0
    transcripts = [json.loads(x) for x in (out / "test_transcripts.jsonl").read_text().splitlines()]
    refs = [json.loads(x)["text"] for x in word_corpus["test"].read_text().splitlines()]
    assert sorted(r["ref"] for r in transcripts) == sorted(t.lower().rstrip(".") for t in refs)  # normalised

    best = next((out / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(best, weights_only=True)  # the tokenizer is plain data: loads without code
    assert state["asr_transfer"]["tokenizer"]["chars"] == sorted("lowmidhg")
    assert not any(k.startswith("backbone.") for k in state["state_dict"])

    ecfg = compose_train(
        [f"ckpt_path={best}", "+trainer.enable_progress_bar=false"], tmp_path / "eval", config_name="eval"
    )
    emetrics = evaluate(ecfg)
    assert emetrics["test/wer"] == metrics["test/wer"] and emetrics["test/cer"] == metrics["test/cer"]

    pcfg = compose_train(
        [
            f"ckpt_path={best}",
            f"inputs={[r['audio_filepath'] for r in transcripts]}",
            f"output={tmp_path / 'p.json'}",
        ],
        tmp_path / "pred",
        config_name="predict",
    )
    run_predict(pcfg)
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["text"] for r in rows] == [t["hyp"] for t in transcripts]


def test_beam_search_eval_with_lexicon_lm_and_bf16_sentencepiece(tmp_path, word_corpus):
    pytest.importorskip("flashlight.lib.text")
    from asr_transfer.text.arpa import main as make_lm

    out = tmp_path / "run"
    cfg = compose_train([*ctc_overrides(word_corpus, tmp_path / "cache"), "trainer.max_epochs=1"], out)
    train(cfg)
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    make_lm(["--manifest", str(word_corpus["train"]), "--ckpt", str(best), "--out", str(tmp_path / "lm")])
    assert sorted((tmp_path / "lm" / "lexicon.txt").read_text().split("\n"))[1:] == [
        "high\th i g h |",
        "low\tl o w |",
        "mid\tm i d |",
    ]
    ecfg = compose_train(
        [
            f"ckpt_path={best}",
            "+trainer.enable_progress_bar=false",
            "decoding=beam",
            "decoding.beam_size=8",
            f"decoding.lm={tmp_path / 'lm' / 'lm.arpa'}",
            f"decoding.lexicon={tmp_path / 'lm' / 'lexicon.txt'}",
        ],
        tmp_path / "eval",
        config_name="eval",
    )
    metrics = evaluate(ecfg)
    assert 0.0 <= metrics["test/wer"] <= 1.0
    hyps = [
        json.loads(x)["hyp"] for x in (tmp_path / "eval" / "test_transcripts.jsonl").read_text().splitlines()
    ]
    assert all(set(h.split()) <= {"low", "mid", "high"} for h in hyps)  # lexicon words only

    # subwords, raw audio through a frozen backbone (no cache), bf16 autocast: finite CTC loss
    out2 = tmp_path / "bf16"
    cfg = compose_train(
        [
            *ctc_overrides(word_corpus, tmp_path / "cache"),
            "trainer.max_epochs=1",
            "trainer.precision=bf16-mixed",
            "features.mode=off",
            "task.tokenizer.kind=sentencepiece",
            "task.tokenizer.vocab_size=12",
        ],
        out2,
    )
    train(cfg)
    metrics = json.loads((out2 / "metrics.json").read_text())
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["test/loss"])
    state = torch.load(out2 / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["asr_transfer"]["tokenizer"]["kind"] == "sentencepiece"
    assert state["asr_transfer"]["tokenizer"]["model"].dtype == torch.uint8


# ----- the real thing: frozen Whisper tiny.en on FSDD digit strings, unseen test speaker ------------
@needs_shared
@pytest.mark.slow
def test_fsdd_digits_blstm_wer_and_beam_search_with_digit_lm(tmp_path):
    """The issue's target: test WER <= 10 % on yweweler; a digit-word LM + lexicon is no worse than greedy."""
    pytest.importorskip("flashlight.lib.text")
    from asr_transfer.text.arpa import main as make_lm

    out = tmp_path / "run"
    cfg = compose_train(
        [
            "experiment=fsdd_digits_ctc",
            f"data.corpus.root={FSDD_DIR}",
            f"backbone.name_or_path={WHISPER_DIR}",
            "data.corpus.val_speakers=[nicolas]",
            "data.corpus.test_speakers=[yweweler]",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
        ],
        out,
    )
    train(cfg)
    greedy = json.loads((out / "metrics.json").read_text())
    assert greedy["test/wer"] <= 0.10, greedy

    best = next((out / "checkpoints").glob("best-*.ckpt"))
    train_manifest = sorted(Path(cfg.paths.cache_dir, "manifests").glob("fsdd_digits-*/train.jsonl"))[-1]
    make_lm(["--manifest", str(train_manifest), "--ckpt", str(best), "--out", str(tmp_path / "lm")])
    ecfg = compose_train(
        [
            f"ckpt_path={best}",
            "+trainer.enable_progress_bar=false",
            "decoding=beam",
            f"decoding.lm={tmp_path / 'lm' / 'lm.arpa'}",
            f"decoding.lexicon={tmp_path / 'lm' / 'lexicon.txt'}",
        ],
        tmp_path / "beam",
        config_name="eval",
    )
    beam = evaluate(ecfg)
    assert beam["test/wer"] <= greedy["test/wer"], (beam, greedy)
