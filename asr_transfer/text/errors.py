"""Per-utterance edit errors, the units of WER and CER (``asr_transfer.stats`` resamples utterances)."""

from __future__ import annotations

from torchmetrics.functional.text import edit_distance


def edit_counts(refs: list[str], hyps: list[str], words: bool) -> tuple[list[int], list[int]]:
    """(Levenshtein errors, reference length) per utterance, in words or in characters (spaces
    included, as torchmetrics' CER counts them). Summed over utterances they give torchmetrics' WER/CER."""
    if words:  # each distinct word becomes one character, so a character edit distance counts word edits
        vocab: dict[str, str] = {}

        def code(s: str) -> str:
            return "".join(vocab.setdefault(w, chr(0xE000 + len(vocab))) for w in s.split())

        refs, hyps = [code(r) for r in refs], [code(h) for h in hyps]
    if not refs:
        return [], []
    errors = edit_distance(hyps, refs, reduction="none")
    return [int(e) for e in errors.reshape(-1).tolist()], [len(r) for r in refs]
