"""Word-level alignment of a reference and a hypothesis for display (difflib), and exact word errors."""

from __future__ import annotations

import difflib


def align_words(ref: str, hyp: str) -> list[dict]:
    """Aligned segments ``{"op": equal|sub|del|ins, "ref": str, "hyp": str}`` in order.

    ``sub`` pairs words one to one where both sides have them; the rest of an uneven replace
    block becomes deletions or insertions, so errors count as they do in WER.
    """
    r, h = ref.split(), hyp.split()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=r, b=h, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [{"op": "equal", "ref": w, "hyp": w} for w in r[i1:i2]]
            continue
        rs, hs = r[i1:i2], h[j1:j2]
        n = min(len(rs), len(hs))
        out += [{"op": "sub", "ref": a, "hyp": b} for a, b in zip(rs[:n], hs[:n])]
        out += [{"op": "del", "ref": a, "hyp": ""} for a in rs[n:]]
        out += [{"op": "ins", "ref": "", "hyp": b} for b in hs[n:]]
    return out


def word_errors(ref: str, hyp: str) -> int:
    """Exact word edit distance (difflib's display alignment is not always minimal)."""
    from torchaudio.functional import edit_distance

    return int(edit_distance(ref.split(), hyp.split()))
