"""A small word n-gram (unigram or bigram) written as an ARPA file, for CTC beam search with KenLM.

Enough for closed-vocabulary tasks (digit strings, commands) and tests, without KenLM's training
binaries. For real LMs use KenLM's ``lmplz`` (the ARPA/binary files load the same way).

Estimation: add-one unigrams (``<unk>`` and ``</s>`` included); bigrams by absolute discounting
with backoff to the unigrams, each history's backoff weight normalising its distribution.

CLI: ``python -m asr_transfer.text.arpa --manifest train.jsonl --ckpt best.ckpt --out lm/`` writes
``lm/lm.arpa`` and, given a checkpoint (its tokenizer spells the words), ``lm/lexicon.txt``.
"""

from __future__ import annotations

import argparse
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, "\n".join(lines))  # atomic, with the process's umask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--manifest", required=True, help="JSONL/CSV manifest whose 'text' fields train the LM"
    )
    parser.add_argument("--out", required=True, help="output folder (lm.arpa, lexicon.txt)")
    parser.add_argument("--ckpt", help="CTC checkpoint: normalise like its tokenizer and write a lexicon")
    parser.add_argument("--order", type=int, default=2)
    args = parser.parse_args(argv)

    from asr_transfer.data.manifest import read_manifest

    texts = [e.text for e in read_manifest(args.manifest, ("audio_filepath", "text"))]
    out = Path(args.out)
    normalize, tokenizer = str, None
    if args.ckpt:
        from asr_transfer.pipeline.restore import load_checkpoint
        from asr_transfer.text.tokenizer import tokenizer_from_state

        tokenizer = tokenizer_from_state(load_checkpoint(args.ckpt)["asr_transfer"]["tokenizer"])
        normalize = tokenizer.normalize
    print(write_arpa(texts, out / "lm.arpa", args.order, normalize=normalize))
    if tokenizer is not None:
        from asr_transfer.text.decoding import write_lexicon

        print(write_lexicon(texts, tokenizer, out / "lexicon.txt"))


if __name__ == "__main__":
    main()
