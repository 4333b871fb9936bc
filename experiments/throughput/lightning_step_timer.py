"""Lightning callback for job B: ``+callbacks.step_timer._target_=lightning_step_timer.StepTimer``.

``run.py`` puts this folder on the subprocess's PYTHONPATH; nothing in ``asr_transfer`` knows it.
"""

from __future__ import annotations

import lightning as L
import torch
from step_clock import StepClock


class StepTimer(L.Callback):
    """Writes ``StepClock.summary()`` to ``out`` (JSON) when training ends."""

    def __init__(self, out: str, warmup: int = 2) -> None:
        self.out = out
        self.clock = StepClock(warmup)

    def on_train_start(self, trainer, pl_module) -> None:
        self.clock.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():  # CUDA runs asynchronously: time finished work only
            torch.cuda.synchronize()
        self.clock.tick()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            extra = {"steps_per_epoch": int(trainer.num_training_batches)}
            if torch.cuda.is_available():  # on a GPU the memory that limits batch size is the card's
                extra["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            self.clock.write(self.out, **extra)
