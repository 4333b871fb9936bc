"""CTC decoding: greedy (best path) and beam search with an optional KenLM n-gram and lexicon.

A decoder is built from ``conf/decoding/*.yaml`` (a partial) and the task's tokenizer:
``decoder = partial(tokenizer)``; ``decoder(log_probs (B, T, V), lengths (B,)) -> list[str]``.
Beam search is torchaudio's ``ctc_decoder`` (flashlight-text underneath, an optional extra).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from asr_transfer.text.tokenizer import UNK, Tokenizer
from asr_transfer.utils.atomic import write_text

log = logging.getLogger(__name__)


def greedy_ids(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, repeats merged, blanks dropped.

    log_probs: (batch, frames, vocab) scores (log-probabilities or logits); lengths: (batch,) valid frames.
    """
    best = log_probs.argmax(-1).cpu()
    lengths = (
        torch.full((best.shape[0],), best.shape[1], dtype=torch.long) if lengths is None else lengths.cpu()
    )
    out = []
    for row, n in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(row[:n])
        out.append([int(i) for i in path if i != blank])
    return out


class GreedyDecoder:
    """``decoding=greedy``: no search, no LM; the standard fine-tuning evaluation."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[str]:
        return [self.tokenizer.decode(ids) for ids in greedy_ids(log_probs, lengths, self.tokenizer.blank)]


class BeamSearchDecoder:
    """``decoding=beam``: torchaudio's flashlight beam search.

    ``lexicon``: a file of ``word token token ...`` lines (``write_lexicon`` makes one); with it the
    output is restricted to lexicon words and ``lm`` is a *word* n-gram. Without it, decoding is
    lexicon-free and ``lm`` must be an n-gram over the tokenizer's tokens. ``lm``: an ARPA or KenLM
    binary file, or None (no LM). Scores: ``lm_weight * log p_LM + word_score * words``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        beam_size: int = 50,
        lm: str | None = None,
        lexicon: str | None = None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        unk_score: float = float("-inf"),
        sil_score: float = 0.0,
        beam_size_token: int | None = None,
        beam_threshold: float = 50.0,
        log_add: bool = False,
    ) -> None:
        try:
            import flashlight.lib.text  # noqa: F401
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as e:
            raise ImportError(
                "decoding=beam needs flashlight-text (torchaudio's CTC beam search): "
                "pip install 'asr_transfer[lm]' (or pip install flashlight-text), or use decoding=greedy"
            ) from e
        for key, path in (("decoding.lm", lm), ("decoding.lexicon", lexicon)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{key}={path!r}: no such file")
        self.tokenizer, self.lexicon = tokenizer, lexicon
        self.decoder = ctc_decoder(
            lexicon=lexicon,
            tokens=list(tokenizer.tokens),
            lm=lm,
            nbest=1,
            beam_size=beam_size,
            beam_size_token=beam_size_token,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            word_score=word_score,
            unk_score=unk_score,
            sil_score=sil_score,
            log_add=log_add,
            blank_token=tokenizer.tokens[tokenizer.blank],
            sil_token=tokenizer.sil_token,
            unk_word=UNK,
        )

    def __call__(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[str]:
        # flashlight reads float32 CPU memory; log-softmax so the beam scores are comparable with the LM's
        emissions = torch.log_softmax(log_probs.detach().float(), dim=-1).cpu().contiguous()
        hyps = self.decoder(emissions, None if lengths is None else lengths.cpu().to(torch.int32))
        out = []
        for nbest in hyps:
            if not nbest:
                out.append("")
            elif self.lexicon is not None:
                out.append(" ".join(w for w in nbest[0].words if w != UNK))
            else:
                out.append(self.tokenizer.decode(nbest[0].tokens.tolist()))
        return out


def write_lexicon(words, tokenizer: Tokenizer, path: str | Path) -> Path:
    """One ``word t o k e n s`` line per distinct word (normalised), in the tokenizer's spelling."""
    seen = sorted({w for text in words for w in tokenizer.normalize(text).split()})
    known = set(tokenizer.tokens)
    lines = []
    for w in seen:
        spelling = tokenizer.spell(w)
        if all(t in known for t in spelling):
            lines.append(f"{w}\t{' '.join(spelling)}\n")
        else:
            log.warning("lexicon: %r has tokens outside the vocabulary; left out", w)
    return write_text(path, "".join(lines))  # atomic, with the process's umask
