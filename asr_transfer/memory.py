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
    ``malloc_trim(0)`` releases those free pages. Measured on 2 cores, wav2vec2-base full
    fine-tuning, batch 8, 12 steps, trimming every step: peak RSS 3311-3437 -> 3038-3044 MiB, but
    s/step +7 % (the freed pages are faulted in again next step). 20 steps with fused AdamW:
    every step 3088 MiB / 2.40 s, every 3 steps 3358 MiB / 2.06 s (the default), every 10 steps
    3615 MiB / 2.15 s; the Trainer recipe, which never trims, 3566-3726 MiB.
    (A fixed ``M_MMAP_THRESHOLD`` of 1 MiB saved more but made the frozen-feature pass 60 %
    slower: every activation became a fresh mapping to fault in.) Does nothing for GPU memory.
    """

    def __init__(self, every_n_steps: int = 3) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.malloc_trim.every_n_steps={every_n_steps}: use 1 or more")
        self.every_n_steps = every_n_steps
        self._trim = _malloc_trim()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._trim is not None and (batch_idx + 1) % self.every_n_steps == 0:
            self._trim(0)
