"""Reading numbers from loosely typed sources (CSV cells, JSON values)."""

from __future__ import annotations

import math


def finite_float(v) -> float | None:
    """``v`` as a finite float, or None (empty cell, text, NaN, inf)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
