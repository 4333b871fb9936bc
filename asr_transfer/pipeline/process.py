"""The end of a run's process: a fast interpreter exit."""

from __future__ import annotations

import gc


def prepare_exit() -> None:
    """Call last in a single (non-multirun) job: nothing the job made is needed any more.

    With torch, transformers and Lightning loaded, CPython's shutdown spends ~2 s walking every
    live object in its final cyclic collections (measured on 2 cores: 10.4 s -> 8.2 s for a process
    that only imports them). ``gc.freeze()`` moves them to the permanent generation, which those
    collections skip; files are already closed and atexit handlers (W&B's upload) still run.
    Never in a multirun: a sweep's next trial needs the collector to free this one's cycles.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():  # called outside @hydra.main (tests, notebooks)
        return
    if HydraConfig.get().mode == RunMode.RUN:
        gc.freeze()
