"""The selection rule studies follow in code: settings and defaults are chosen on validation metrics
only, with the same tuning budget for every method.

A study writes one row per run (a dict or a CSV row) with the setting it varied, the group it belongs to
(method, budget, ...), the seed, and val metrics beside test metrics. ``choose_on_val`` picks, per group,
the setting with the best mean val metric over its seeds; ``chosen_rows`` returns those runs, whose test
columns are then reported. The test columns are never read here.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from asr_transfer.utils.numbers import finite_float


def _group(row: dict, within: Sequence[str]) -> tuple:
    return tuple(row[k] for k in within)


def tuning_budgets(rows: Iterable[dict], setting: str, within: Sequence[str] = ()) -> dict[tuple, int]:
    """How many distinct settings each group tried (its tuning budget)."""
    tried: dict[tuple, set] = {}
    for r in rows:
        tried.setdefault(_group(r, within), set()).add(r[setting])
    return {g: len(s) for g, s in tried.items()}


def choose_on_val(
    rows: Iterable[dict],
    metric: str = "val/acc",
    setting: str = "setting",
    within: Sequence[str] = (),
    mode: str = "max",
    equal_budgets: bool = True,
) -> dict[tuple, str]:
    """Per group (the values of the ``within`` columns), the setting whose runs have the best mean
    ``metric`` (a validation column: anything else is refused). Ties go to the setting listed first, so
    list the simpler or default setting first. ``equal_budgets``: refuse groups that tried different
    numbers of settings (a method tuned more would win on tuning, not on merit)."""
    if not metric.startswith("val"):
        raise ValueError(
            f"choose_on_val(metric={metric!r}): choose on a validation column (val/...), never test"
        )
    if mode not in ("max", "min"):
        raise ValueError(f"choose_on_val(mode={mode!r}): use max or min")
    rows = list(rows)
    if equal_budgets:
        budgets = tuning_budgets(rows, setting, within)
        if len(set(budgets.values())) > 1:
            raise ValueError(
                f"unequal tuning budgets ({setting} values per {'/'.join(within) or 'group'}: {budgets}): "
                "give every group the same number of settings, or pass equal_budgets=False and say why"
            )
    values: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        v = finite_float(r.get(metric))
        per = values.setdefault(_group(r, within), {}).setdefault(r[setting], [])
        if v is not None:
            per.append(v)
    sign = 1.0 if mode == "max" else -1.0
    chosen = {}
    for group, settings in values.items():
        scored = [(s, statistics.fmean(v)) for s, v in settings.items() if v]
        if not scored:
            raise ValueError(f"group {group}: no run has a finite {metric}")
        best = max(sign * m for _, m in scored)
        chosen[group] = next(s for s, m in scored if sign * m == best)  # first listed among ties
    return chosen


def chosen_rows(rows: Iterable[dict], chosen: dict[tuple, str], setting: str = "setting",
                within: Sequence[str] = ()) -> list[dict]:  # fmt: skip
    """The runs of each group's chosen setting (all its seeds), in their original order."""
    return [r for r in rows if chosen.get(_group(r, within)) == r[setting]]
