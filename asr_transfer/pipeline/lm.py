"""Make a small word n-gram LM (and a lexicon) for CTC beam search from a manifest's transcripts.

``python -m asr_transfer.pipeline.lm --manifest train.jsonl --ckpt best.ckpt --out lm/`` writes
``lm/lm.arpa`` and, given a checkpoint (its tokenizer spells the words), ``lm/lexicon.txt``
(``text/arpa.py`` estimates the model; ``text/decoding.py`` writes the lexicon).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_transfer.checkpoint_io import load_checkpoint
from asr_transfer.data.manifest import read_manifest
from asr_transfer.text.arpa import write_arpa
from asr_transfer.text.decoding import write_lexicon
from asr_transfer.text.tokenizer import tokenizer_from_state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--manifest", required=True, help="JSONL/CSV manifest whose 'text' fields train the LM"
    )
    parser.add_argument("--out", required=True, help="output folder (lm.arpa, lexicon.txt)")
    parser.add_argument("--ckpt", help="CTC checkpoint: normalise like its tokenizer and write a lexicon")
    parser.add_argument("--order", type=int, default=2)
    args = parser.parse_args(argv)

    texts = [e.text for e in read_manifest(args.manifest, ("audio_filepath", "text"))]
    out = Path(args.out)
    normalize, tokenizer = str, None
    if args.ckpt:
        tokenizer = tokenizer_from_state(load_checkpoint(args.ckpt)["asr_transfer"]["tokenizer"])
        normalize = tokenizer.normalize
    print(write_arpa(texts, out / "lm.arpa", args.order, normalize=normalize))
    if tokenizer is not None:
        print(write_lexicon(texts, tokenizer, out / "lexicon.txt"))


if __name__ == "__main__":
    main()
