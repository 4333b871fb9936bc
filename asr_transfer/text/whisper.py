"""Whisper's text side for ``task=seq2seq``: labels as ``WhisperProcessor`` builds them, the decoder's
teacher-forcing pairs, decoding back to text, the named normaliser and the hallucination guard.

Labels are ``tokenizer(text).input_ids`` with the prefix set once (start-of-transcript, language,
task, no-timestamps, text, end-of-text), exactly what the transformers fine-tuning recipe feeds
``WhisperForConditionalGeneration(labels=...)``. An optional prompt goes before them as
``<|startofprev|> prompt`` (``get_prompt_ids``) and is never scored.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

IGNORE = -100  # the label id cross-entropy skips (transformers' convention)
NORMALIZERS = ("english", "basic", "none")
NON_SPEECH = re.compile(r"^\s*[\[\(].*[\]\)]\s*$")  # "[BLANK_AUDIO]", "(music)", "[ Silence ]"


class WhisperText:
    """Args:
    name_or_path: the checkpoint whose tokenizer (and normalizer.json) is used.
    language: e.g. "german" or "de"; None for English-only checkpoints (which have no language token).
    task: transcribe | translate (multilingual checkpoints; English-only ones have no task token).
    prompt: text given to the decoder before every transcript (``<|startofprev|>``), or None.
    normalizer: english (Whisper's EnglishTextNormalizer) | basic (BasicTextNormalizer) | none;
      applied to reference and hypothesis alike for the reported WER/CER.
    multilingual: whether the checkpoint has language tokens (from the model's config).
    """

    def __init__(
        self,
        name_or_path: str,
        multilingual: bool,
        language: str | None = None,
        task: str = "transcribe",
        prompt: str | None = None,
        normalizer: str = "english",
    ) -> None:
        from transformers import WhisperTokenizer

        from asr_transfer.utils.hub import load_pretrained

        if normalizer not in NORMALIZERS:
            raise ValueError(f"task.normalizer={normalizer!r} is not one of {list(NORMALIZERS)}")
        if multilingual and language is None:
            raise ValueError(
                f"task.language: {name_or_path!r} is multilingual; name the transcripts' language "
                "(task.language=english, task.language=de ...)"
            )
        if not multilingual and (language not in (None, "en", "english") or task != "transcribe"):
            raise ValueError(
                f"task.language={language!r} task.task={task!r}: {name_or_path!r} is English-only "
                "(it has no language or task tokens); use a multilingual checkpoint for another language"
            )
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task.task={task!r}: use transcribe | translate")
        tok = load_pretrained(WhisperTokenizer.from_pretrained, name_or_path, "head.name_or_path")
        if multilingual:
            tok.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
        self.tokenizer, self.multilingual = tok, multilingual
        self.language, self.task, self.prompt = language, task, prompt
        self.normalizer_name = normalizer
        self.prompt_ids = [] if not prompt else tok.get_prompt_ids(prompt, return_tensors="np").tolist()
        self.pad_id = tok.eos_token_id  # decoder inputs past a transcript's end (causal: never read)

    def labels(self, text: str) -> list[int]:
        """<|startoftranscript|> [language] [task] <|notimestamps|> text <|endoftext|>."""
        return self.tokenizer(text).input_ids

    def generate_kwargs(self) -> dict:
        """What ``generate`` needs beyond the checkpoint's generation config to produce these labels."""
        kwargs = {"language": self.language, "task": self.task} if self.multilingual else {}
        if self.prompt_ids:
            kwargs["prompt_ids"] = torch.tensor(self.prompt_ids)
        return kwargs

    def teacher_forcing(self, texts: list[str], device=None) -> tuple[Tensor, Tensor]:
        """(decoder input ids (B, S), targets (B, S)): the prompt + labels without their last token,
        and the labels shifted by one with the prompt and padding set to ``IGNORE``."""
        rows = [self.prompt_ids + self.labels(t) for t in texts]
        n = max(len(r) for r in rows) - 1
        inputs = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        targets = torch.full((len(rows), n), IGNORE, dtype=torch.long)
        start = len(self.prompt_ids)  # scored from the token after <|startoftranscript|>
        for i, r in enumerate(rows):
            inputs[i, : len(r) - 1] = torch.tensor(r[:-1])
            targets[i, start : len(r) - 1] = torch.tensor(r[start + 1 :])
        return inputs.to(device), targets.to(device)

    def n_tokens(self, text: str) -> int:
        """Decoder positions a transcript takes (prompt + labels)."""
        return len(self.prompt_ids) + len(self.labels(text))

    def crop(self, text: str, limit: int) -> str:
        """The longest start of ``text`` whose labels (with prompt and special tokens) take at most
        ``limit`` decoder positions; it still ends in end-of-text once tokenized."""
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        room = limit - (self.n_tokens(text) - len(ids))
        while room > 0:
            cropped = self.tokenizer.decode(ids[:room])
            if self.n_tokens(cropped) <= limit:  # a cut inside a merged character re-tokenizes longer
                return cropped
            room -= 1
        return ""

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [
            t.strip()
            for t in self.tokenizer.batch_decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        ]

    def normalize(self, text: str) -> str:
        """The reported metrics' normalisation (``normalizer``), on reference and hypothesis alike."""
        if self.normalizer_name == "english":
            text = self.tokenizer.normalize(text)
        elif self.normalizer_name == "basic":
            text = self.tokenizer.basic_normalize(text)
        return " ".join(text.split())

    @staticmethod
    def raw(text: str) -> str:
        """The raw transcript scored as is (whitespace collapsed only)."""
        return " ".join(text.split())


def is_multilingual(generation_config, config) -> bool:
    """Whether a checkpoint has language and task tokens: its generation config says so, else the
    vocabulary size does (English-only checkpoints have 51864 tokens)."""
    return bool(getattr(generation_config, "is_multilingual", config.vocab_size > 51864))


def hallucinated(ref: str, hyp: str) -> bool:
    """Empty, a non-speech tag ("[BLANK_AUDIO]"), or more than twice the reference's length in characters."""
    hyp = hyp.strip()
    return not hyp or bool(NON_SPEECH.match(hyp)) or len(hyp) > 2 * max(len(ref.strip()), 1)
