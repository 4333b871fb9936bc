"""Tokenizers, CTC decoding (greedy, beam with lexicon + ARPA LM), WER/CER and the ARPA writer."""

from __future__ import annotations

import random
import sys

import pytest
import torch

from asr_transfer.text.arpa import write_arpa
from asr_transfer.text.decoding import BeamSearchDecoder, GreedyDecoder, greedy_ids, write_lexicon
from asr_transfer.text.tokenizer import CharTokenizer, TextNormalizer, fit_tokenizer, tokenizer_from_state

DIGITS = "zero one two three four five six seven eight nine".split()
TEXTS = [
    "Hello, World!",
    "Don't STOP me—now...",
    "  the   quick\tbrown fox | jumps ",
    "Ünïcode café, naïve résumé",
    "seven three one",
    "it's 42 o'clock",
]


def digit_texts(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 7))) for _ in range(n)]


def test_normalizer_case_punctuation_delimiter():
    norm = TextNormalizer()
    assert norm("Hello, World!") == "hello world"
    assert norm("Don't STOP me—now...") == "don't stop me now"
    assert norm("a|b  c") == "a b c"  # the word delimiter never survives as a character
    assert TextNormalizer(lowercase=False)("Hi THERE.") == "Hi THERE"
    assert TextNormalizer(keep="")("don't") == "don t"


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_round_trip_is_identity_after_normalisation(kind):
    tok = fit_tokenizer(TEXTS * 10, kind=kind, vocab_size=40)
    assert tok.tokens[0] == "<blank>" and tok.blank == 0
    for t in TEXTS:
        ids = tok.encode(t)
        assert ids and all(0 < i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == tok.normalize(t)


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_state_survives_weights_only_load(kind, tmp_path):
    tok = fit_tokenizer(TEXTS * 10, kind=kind, vocab_size=40)
    torch.save({"tok": tok.state()}, tmp_path / "t.pt")
    back = tokenizer_from_state(torch.load(tmp_path / "t.pt", weights_only=True)["tok"])
    assert back.tokens == tok.tokens
    assert [back.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]


def test_char_vocab_layout_and_unknown_characters():
    tok = fit_tokenizer(["abc ab"])
    assert tok.tokens == ["<blank>", "<unk>", "|", "a", "b", "c"]
    assert tok.encode("Ab, c") == [3, 4, 2, 5]
    assert tok.encode("axb") == [3, 1, 4]  # unseen 'x' -> <unk>, decoded to nothing
    assert tok.decode(tok.encode("axb")) == "ab"
    with pytest.raises(ValueError, match="empty after normalisation"):
        fit_tokenizer(["...", "!"])
    with pytest.raises(ValueError, match="task.tokenizer.kind"):
        fit_tokenizer(["a"], kind="bytes")


def test_greedy_on_hand_made_logits():
    # frames: a a _ a b b _ _ c  -> "a a b c" (the blank separates the repeated a)
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    logits = torch.full((1, len(path) + 2, 4), -10.0)
    logits[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    logits[0, len(path) :, 3] = 0.0  # padding frames beyond the length must be ignored
    assert greedy_ids(logits, torch.tensor([len(path)])) == [[1, 1, 2, 3]]
    assert greedy_ids(logits) == [[1, 1, 2, 3]]

    tok = CharTokenizer(list("ab"))  # ids: 0 blank, 1 unk, 2 |, 3 a, 4 b
    path = [3, 3, 0, 4, 2, 2, 4, 0, 4, 3]  # "ab" | "bba"
    logits = torch.full((2, len(path), tok.vocab_size), -5.0)
    logits[:, torch.arange(len(path)), torch.tensor(path)] = 5.0
    assert GreedyDecoder(tok)(logits, torch.tensor([len(path), 4])) == ["ab bba", "ab"]


def _arpa_prob(path, history: str, word: str) -> float:
    """p(word | history) from an ARPA bigram file, backing off as KenLM does."""
    uni, bi, bow, section = {}, {}, {}, None
    for line in path.read_text().splitlines():
        if line.startswith("\\"):
            section = line
            continue
        parts = line.split("\t")
        if section == "\\1-grams:" and len(parts) >= 2:
            uni[parts[1]] = float(parts[0])
            if len(parts) == 3:
                bow[parts[1]] = float(parts[2])
        elif section == "\\2-grams:" and len(parts) == 2:
            bi[tuple(parts[1].split())] = float(parts[0])
    if (history, word) in bi:
        return 10 ** bi[(history, word)]
    return 10 ** (bow.get(history, 0.0) + uni[word])


@pytest.mark.parametrize("order", [1, 2])
def test_arpa_distributions_sum_to_one(order, tmp_path):
    texts = digit_texts(50)
    path = write_arpa(texts, tmp_path / "lm.arpa", order=order)
    vocab = [*DIGITS, "</s>", "<unk>"]
    for history in ["<s>", "seven", "one"]:
        total = sum(_arpa_prob(path, history, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4)
    if order == 2:  # a seen bigram: (count - discount) / count(history)
        first = texts[0].split()[0]
        starts = sum(t.split()[0] == first for t in texts)
        assert _arpa_prob(path, "<s>", first) == pytest.approx((starts - 0.5) / len(texts), rel=1e-5)
    with pytest.raises(ValueError, match="unigram or bigram"):
        write_arpa(texts, tmp_path / "x.arpa", order=3)


def _peaked(tok, text: str, frames_per_token: int = 2) -> torch.Tensor:
    """Emissions (1, T, V) whose best path spells ``text`` (a blank after each token)."""
    path = []
    for i in tok.encode(text):
        path += [i] * frames_per_token + [0]
    e = torch.full((1, len(path), tok.vocab_size), -6.0)
    e[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    return e


def test_beam_search_with_lexicon_and_lm_fixes_a_misspelling(tmp_path):
    pytest.importorskip("flashlight.lib.text")
    texts = digit_texts()
    tok = fit_tokenizer(texts)
    lm = write_arpa(texts, tmp_path / "lm.arpa", normalize=tok.normalize)
    lexicon = write_lexicon(texts, tok, tmp_path / "lexicon.txt")
    assert "seven\ts e v e n |" in lexicon.read_text().splitlines()
    emissions = _peaked(tok, "seven thre one")  # "thre": not a word
    assert GreedyDecoder(tok)(emissions) == ["seven thre one"]
    free = BeamSearchDecoder(tok, beam_size=10)
    assert free(emissions) == ["seven thre one"]  # lexicon-free, no LM: the best path
    constrained = BeamSearchDecoder(tok, beam_size=10, lm=str(lm), lexicon=str(lexicon))
    lengths = torch.tensor([emissions.shape[1]])
    assert constrained(emissions, lengths) == ["seven three one"]


def test_beam_search_sentencepiece_lexicon_free():
    pytest.importorskip("flashlight.lib.text")
    texts = digit_texts()
    tok = fit_tokenizer(texts, kind="sentencepiece", vocab_size=30)
    emissions = _peaked(tok, "nine eight zero")
    assert BeamSearchDecoder(tok, beam_size=5)(emissions) == ["nine eight zero"]


def test_beam_search_missing_dependency_and_files(monkeypatch, tmp_path):
    tok = fit_tokenizer(["a b"])
    monkeypatch.setitem(sys.modules, "flashlight.lib.text", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="flashlight-text.*decoding=greedy"):
        BeamSearchDecoder(tok)
    monkeypatch.undo()
    pytest.importorskip("flashlight.lib.text")
    with pytest.raises(FileNotFoundError, match="decoding.lm"):
        BeamSearchDecoder(tok, lm=str(tmp_path / "nope.arpa"))


def test_greedy_decoding_of_log_softmax_equals_logits():
    logits = torch.randn(3, 20, 7)
    lengths = torch.tensor([20, 11, 1])
    assert greedy_ids(logits, lengths) == greedy_ids(torch.log_softmax(logits, -1), lengths)
