"""The ranks of a distributed run, as the features stage sees them (it runs before ``Trainer.fit``).

Under torchrun or SLURM every rank exists from the start. Lightning's own DDP launcher
(``strategy=ddp`` started as one process) creates the other ranks only inside ``fit``; a pass run
before that would be one process encoding everything. ``start_ranks`` therefore starts them
through the trainer's launcher right after the trainer is built (each new rank runs the script
from the top, as it would at ``fit``), and joins the process group the strategy will use, so the
stage can split its work and wait for the others. ``fit`` then finds both in place.
"""

from __future__ import annotations

import os

import torch.distributed as dist


def start_ranks(trainer) -> None:
    """Start the trainer's DDP processes now and join its process group (no-op for one process)."""
    if trainer.world_size <= 1:
        return
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = trainer.strategy.launcher
    if isinstance(launcher, _SubprocessScriptLauncher):
        # Its public entry point: starts the children unless they exist (LOCAL_RANK set, as in a
        # child or under torchrun/SLURM), then calls the function. fit's own call finds them started.
        launcher.launch(lambda: None, trainer=trainer)
    if not dist.is_initialized() and "LOCAL_RANK" in os.environ:
        trainer.strategy.setup_environment()  # the same group fit would create; fit then reuses it


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(value) -> list:
    """Every rank's ``value`` (a barrier too: returns once all ranks got here)."""
    rank, world = rank_world()
    if world == 1:
        return [value]
    out: list = [None] * world
    dist.all_gather_object(out, value)
    return out
