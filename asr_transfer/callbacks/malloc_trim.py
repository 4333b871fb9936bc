"""Keep a CPU training process's resident memory from creeping up step after step."""

from __future__ import annotations

import ctypes
import sys

from lightning.pytorch.callbacks import Callback


def _malloc_trim():
    """glibc's ``malloc_trim`` (Linux), or None where there is no such call (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class MallocTrim(Callback):
    """``callbacks.malloc_trim``: hand freed heap memory back to the OS every ``every_n_steps``.

    Clips differ in length, so every step frees CPU activation buffers and allocates new ones of
    other sizes. glibc raises its mmap threshold after each large free, so later buffers come from
    the heap, which fragments and keeps the freed pages: resident memory grows step after step.
    ``malloc_trim(0)`` releases those free pages. Trimming costs time (the freed pages are faulted
    in again next step), so it runs every few steps (experiments/throughput/README.md measures the
    trade-off and the alternatives). Does nothing for GPU memory.
    """

    def __init__(self, every_n_steps: int = 3) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.malloc_trim.every_n_steps={every_n_steps}: use 1 or more")
        self.every_n_steps = every_n_steps
        self._trim = _malloc_trim()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._trim is not None and (batch_idx + 1) % self.every_n_steps == 0:
            self._trim(0)
