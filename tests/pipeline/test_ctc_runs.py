"""CTC end to end: train -> eval -> predict agree; beam search with a lexicon and an LM; bf16 subwords.

Tiny random Whisper, generated "word" audio.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_transfer.pipeline.evaluate import evaluate
from asr_transfer.pipeline.train import train
from tests.conftest import TINY_WHISPER, compose_train, predict_rows, tone, tone_overrides, write_wav

WORD_FREQS = {"low": 300.0, "mid": 800.0, "high": 1800.0}


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
        *tone_overrides(corpus, cache_dir),  # the same manifest/run settings, another corpus
        *TINY_WHISPER,
        "task=ctc",
        "head=ctc_blstm",
        "head.hidden_size=16",
        "optimizer.lr=0.01",
    ]


def _rate(transcripts: list[dict], kind: str) -> float:
    """Corpus WER or CER of (ref, pred) rows: edit distance summed over clips / reference length summed."""
    import torchaudio

    split = str.split if kind == "wer" else list
    errors = sum(torchaudio.functional.edit_distance(split(r["ref"]), split(r["pred"])) for r in transcripts)
    return errors / sum(len(split(r["ref"])) for r in transcripts)


def test_train_eval_predict_agree(tmp_path, word_corpus):
    out = tmp_path / "run"
    cfg = compose_train([*ctc_overrides(word_corpus, tmp_path / "cache"), "trainer.max_epochs=2"], out)
    assert cfg.optimized_metric == "val/wer" and cfg.callbacks.model_checkpoint.mode == "min"
    best_wer = train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert best_wer == pytest.approx(metrics["val/wer"])  # train returns the best checkpoint's val/wer
    assert {"test/wer", "test/cer", "test/loss", "val/wer", "val/cer"} <= set(metrics)
    transcripts = [json.loads(x) for x in (out / "test_transcripts.jsonl").read_text().splitlines()]
    # the reported WER/CER are those of the written transcripts (corpus level, not a mean per clip)
    assert metrics["test/wer"] == pytest.approx(_rate(transcripts, "wer"), abs=1e-6)
    assert metrics["test/cer"] == pytest.approx(_rate(transcripts, "cer"), abs=1e-6)
    for m in ("wer", "cer"):  # the interval over test utterances brackets the corpus-level rate
        assert (
            metrics[f"test/{m}_ci95_low"]
            <= metrics[f"test/{m}"] + 1e-9
            <= metrics[f"test/{m}_ci95_high"] + 2e-9
        )
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

    rows = predict_rows(best, [r["audio_filepath"] for r in transcripts], tmp_path / "p.json")
    assert [r["pred"] for r in rows] == [t["pred"] for t in transcripts]


def test_beam_search_eval_with_lexicon_lm_and_bf16_sentencepiece(tmp_path, word_corpus):
    pytest.importorskip("flashlight.lib.text")
    from asr_transfer.pipeline.lm import main as make_lm

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
    rows = [json.loads(x) for x in (tmp_path / "eval" / "test_transcripts.jsonl").read_text().splitlines()]
    assert metrics["test/wer"] == pytest.approx(_rate(rows, "wer"), abs=1e-6)
    assert all(set(r["pred"].split()) <= {"low", "mid", "high"} for r in rows)  # lexicon words only

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
