"""Tokenizers for CTC: characters (the wav2vec2 recipe) and SentencePiece subwords.

Both reserve id 0 for the CTC blank. A tokenizer is fitted on the training split's transcripts
and travels inside the checkpoint as plain data (``state()``: lists, strings and a uint8 tensor),
so ``torch.load(weights_only=True)`` restores it and eval/predict need nothing else.

Normalisation (applied before encoding, and to references before WER/CER): Unicode NFKC,
optional lower-casing, punctuation and symbols become spaces except the characters in ``keep``
(the apostrophe by default: "don't" stays one word), whitespace collapsed.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterable, Sequence

import torch

BLANK = "<blank>"
UNK = "<unk>"
WORD_DELIMITER = "|"  # wav2vec2's word boundary token in character vocabularies


class TextNormalizer:
    def __init__(self, lowercase: bool = True, keep: str = "'") -> None:
        self.lowercase, self.keep = lowercase, keep

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        if self.lowercase:
            text = text.lower()
        chars = [
            " " if unicodedata.category(c)[0] in "PSZC" and c not in self.keep else c
            for c in text.replace(WORD_DELIMITER, " ")
        ]
        return " ".join("".join(chars).split())

    def state(self) -> dict:
        return {"lowercase": self.lowercase, "keep": self.keep}


class Tokenizer:
    """Interface: ``encode(text) -> ids`` (normalises first), ``decode(ids) -> text``, ``tokens`` (one
    string per id; id 0 is the blank), ``sil_token`` (the word-boundary token the beam decoder uses),
    ``spell(word)`` (a lexicon entry's tokens) and ``state()`` (plain data for the checkpoint)."""

    blank = 0
    sil_token: str
    tokens: list[str]

    def __init__(self, normalizer: TextNormalizer) -> None:
        self.normalize = normalizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def spell(self, word: str) -> list[str]:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """``<blank>``, ``<unk>``, ``|`` (word delimiter), then the characters of the training text, sorted.
    Characters never seen in training encode to ``<unk>`` and decode to nothing."""

    sil_token = WORD_DELIMITER

    def __init__(self, chars: Sequence[str], normalizer: TextNormalizer | None = None) -> None:
        super().__init__(normalizer or TextNormalizer())
        self.tokens = [BLANK, UNK, WORD_DELIMITER, *chars]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, texts: Iterable[str], normalizer: TextNormalizer) -> CharTokenizer:
        chars = sorted({c for t in texts for c in normalizer(t) if c != " "})
        if not chars:
            raise ValueError("the training transcripts are empty after normalisation: check the 'text' field")
        return cls(chars, normalizer)

    def encode(self, text: str) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(c, unk) for c in self.normalize(text).replace(" ", WORD_DELIMITER)]

    def decode(self, ids: Iterable[int]) -> str:
        special = (self.blank, self.index[UNK])
        text = "".join(self.tokens[i] for i in ids if i not in special)
        return " ".join(text.replace(WORD_DELIMITER, " ").split())

    def spell(self, word: str) -> list[str]:
        return [*word, WORD_DELIMITER]

    def state(self) -> dict:
        return {"kind": "char", "chars": self.tokens[3:], "normalizer": self.normalize.state()}


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (unigram or BPE) trained on the training text; CTC id = piece id + 1 (0 is blank).

    The beam decoder's word-boundary token is ``<unk>``: subword words carry their boundary in
    the ``▁`` prefix, so the decoder needs a silence token the model (almost) never emits, as
    fairseq's decoders do with ``<s>``."""

    sil_token = UNK

    def __init__(self, model: bytes, normalizer: TextNormalizer | None = None) -> None:
        import sentencepiece as spm

        super().__init__(normalizer or TextNormalizer())
        self.model = bytes(model)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model)
        self.tokens = [BLANK, *(self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size()))]

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        normalizer: TextNormalizer,
        vocab_size: int = 128,
        model_type: str = "unigram",
    ) -> SentencePieceTokenizer:
        import sentencepiece as spm

        lines = [n for n in (normalizer(t) for t in texts) if n]
        if not lines:
            raise ValueError("the training transcripts are empty after normalisation: check the 'text' field")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            normalization_rule_name="identity",  # the TextNormalizer already ran
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,  # small corpora: fewer pieces than asked is fine
            minloglevel=2,
        )
        return cls(buf.getvalue(), normalizer)

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(self.normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) - 1 for i in ids if int(i) > 1])  # drop blank and <unk>

    def spell(self, word: str) -> list[str]:
        return self.sp.encode(word, out_type=str)

    def state(self) -> dict:
        model = torch.frombuffer(bytearray(self.model), dtype=torch.uint8).clone()
        return {"kind": "sentencepiece", "model": model, "normalizer": self.normalize.state()}


def fit_tokenizer(
    texts: Iterable[str],
    kind: str = "char",
    lowercase: bool = True,
    keep: str = "'",
    vocab_size: int = 128,
    model_type: str = "unigram",
) -> Tokenizer:
    """Fit a tokenizer on training transcripts (``task.tokenizer`` in conf/task/ctc.yaml)."""
    normalizer = TextNormalizer(lowercase, keep)
    if kind == "char":
        return CharTokenizer.fit(texts, normalizer)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.fit(texts, normalizer, vocab_size, model_type)
    raise ValueError(f"task.tokenizer.kind={kind!r}: use 'char' or 'sentencepiece'")


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Inverse of ``Tokenizer.state()`` (what a checkpoint stores)."""
    normalizer = TextNormalizer(**state.get("normalizer", {}))
    if state["kind"] == "char":
        return CharTokenizer(list(state["chars"]), normalizer)
    if state["kind"] == "sentencepiece":
        model = state["model"]
        return SentencePieceTokenizer(
            model.numpy().tobytes() if torch.is_tensor(model) else model, normalizer
        )
    raise ValueError(f"unknown tokenizer kind {state['kind']!r} in the checkpoint")
