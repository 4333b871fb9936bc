"""A small word n-gram (unigram or bigram) written as an ARPA file, for CTC beam search with KenLM.

Enough for closed-vocabulary tasks (digit strings, commands) and tests, without KenLM's training
binaries. For real LMs use KenLM's ``lmplz`` (the ARPA/binary files load the same way).

Estimation: add-one unigrams (``<unk>`` and ``</s>`` included); bigrams by absolute discounting
with backoff to the unigrams, each history's backoff weight normalising its distribution.

CLI (it reads manifests and checkpoints, so it sits in the pipeline): ``python -m asr_transfer.pipeline.lm``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from asr_transfer.utils.atomic import write_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else -99.0


def ngram_counts(texts: Iterable[str], normalize: Callable[[str], str] = str) -> tuple[Counter, Counter]:
    uni, bi = Counter(), Counter()
    for text in texts:
        words = [BOS, *normalize(text).split(), EOS]
        uni.update(words[1:])
        bi.update(zip(words[:-1], words[1:]))
    return uni, bi


def write_arpa(
    texts: Iterable[str],
    path: str | Path,
    order: int = 2,
    discount: float = 0.5,
    normalize: Callable[[str], str] = str,
) -> Path:
    """Estimate a word n-gram of ``order`` 1 or 2 on ``texts`` and write it atomically as ARPA."""
    if order not in (1, 2):
        raise ValueError(f"order={order}: this writer makes unigram or bigram models (use KenLM for more)")
    if not 0 < discount < 1:
        raise ValueError(f"discount={discount}: must be in (0, 1)")
    uni, bi = ngram_counts(texts, normalize)
    if not uni:
        raise ValueError("no text to estimate an n-gram from")
    vocab = sorted(set(uni) | {UNK})
    total = sum(uni.values()) + len(vocab)
    p_uni = {w: (uni[w] + 1) / total for w in vocab}

    by_history: dict[str, dict[str, int]] = {}
    for (h, w), c in bi.items():
        by_history.setdefault(h, {})[w] = c
    p_bi, backoff = {}, {}
    if order == 2:
        for h, followers in by_history.items():
            n = sum(followers.values())
            for w, c in followers.items():
                p_bi[(h, w)] = (c - discount) / n
            left = discount * len(followers) / n  # probability mass freed by discounting
            unseen = 1.0 - sum(p_uni.get(w, 0.0) for w in followers)
            backoff[h] = left / unseen if unseen > 0 else 1.0

    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}"]
    if order == 2:
        lines.append(f"ngram 2={len(p_bi)}")
    lines += ["", "\\1-grams:"]
    for w in [BOS, *vocab]:
        lp = -99.0 if w == BOS else _log10(p_uni[w])
        bo = f"\t{_log10(backoff[w]):.6f}" if w in backoff else ""
        lines.append(f"{lp:.6f}\t{w}{bo}")
    if order == 2:
        lines += ["", "\\2-grams:"]
        lines += [f"{_log10(p):.6f}\t{h} {w}" for (h, w), p in sorted(p_bi.items())]
    lines += ["", "\\end\\", ""]

    return write_text(path, "\n".join(lines))
