"""The search space from Hydra's override syntax (``hydra.sweeper.params`` and the command line).

``choice(a,b)`` / ``a,b`` -> categorical; ``interval(lo,hi)`` -> uniform float;
``tag(log, interval(lo,hi))`` -> log-uniform; ``range(start,stop[,step])`` -> a stepped int/float
distribution over exactly the values Hydra's range yields (stop excluded, as in a grid sweep);
anything else (``key=value``, ``+key=value``, ``~key``) is passed to every trial as it is.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer, ValueType
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    key = override.get_key_element()
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise ValueError(
            f"{override.input_line}: glob(...) is not a search space here; list the options with choice(...)"
        )
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        # lists/dicts as override text: Optuna's categorical takes only None, bool, int, float, str
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):
        values = sorted(override.sweep_iterator())
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        step = abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(values[0], values[-1], step=step)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    if isinstance(value, IntervalSweep):  # Hydra makes both ends floats: interval(1,8) is 1.0..8.0
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    raise ValueError(
        f"{key}: {override.input_line!r} is not a search space the Optuna sweeper knows; "
        "use choice(...), interval(lo,hi), tag(log, interval(lo,hi)) or range(start,stop[,step])"
    )


def parse_space(overrides: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """-> ({key: distribution}, fixed overrides). A later override of a key replaces an earlier one,
    so the command line (parsed after ``hydra.sweeper.params``) wins, fixed value or range."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def format_value(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back (null, true, 1e-05)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)  # strings: override syntax already


def suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    """Optuna's public suggest_* for each distribution type (the sampler sees the same space)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def trial_overrides(trial: optuna.Trial, space: dict[str, BaseDistribution], fixed: list[str]) -> list[str]:
    return [f"{key}={format_value(suggest(trial, key, dist))}" for key, dist in space.items()] + fixed
