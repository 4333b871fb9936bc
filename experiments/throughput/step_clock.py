"""Seconds per optimizer step, measured the same way in both training loops.

A step is the interval between consecutive step ends (data loading + forward + backward +
optimizer), so both systems are charged for everything their loop does. The first ``warmup``
steps (allocator growth, lazy init, first-batch costs) are left out of the per-step figure.
Pure Python on purpose: the Trainer recipe imports it without pulling in Lightning.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path


class StepClock:
    def __init__(self, warmup: int = 2) -> None:
        self.warmup = warmup
        self.t_start: float | None = None
        self.ends: list[float] = []

    def start(self) -> None:
        self.t_start = time.perf_counter()

    def tick(self) -> None:
        self.ends.append(time.perf_counter())

    def summary(self) -> dict:
        """``s_per_step``: mean over steps after ``warmup`` (all steps if there are too few)."""
        if self.t_start is None or not self.ends:
            return {"steps": 0}
        marks = [self.t_start, *self.ends]
        steps = [b - a for a, b in zip(marks, marks[1:])]
        timed = steps[self.warmup :] if len(steps) > self.warmup else steps
        return {
            "steps": len(steps),
            "warmup_steps": len(steps) - len(timed),
            "s_per_step": sum(timed) / len(timed),
            "s_per_step_median": statistics.median(timed),
            "first_step_s": steps[0],
            "train_loop_s": self.ends[-1] - self.t_start,
        }

    def write(self, path: str | Path, **extra) -> None:
        write_json(path, {**self.summary(), **extra})


def write_json(path: str | Path, data: dict) -> None:
    """Atomic: a reader never sees half a file (temp file in the same folder, then rename).

    Same as ``asr_transfer.utils.atomic.write_json``, kept here on purpose: the Trainer recipe
    imports this module and must not pay for importing asr_transfer (Hydra, its modules) in its
    timed process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
