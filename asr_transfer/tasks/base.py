"""What every transfer task shares: backbone -> featurizer -> head, optimizer groups, lean checkpoints,
and the protocol the pipeline calls (the hooks below; nothing is looked up with ``hasattr``).

A task type (classification, CTC, a regression in tests/) is one module with a subclass that names
its targets (``make_targets``), builds its head, and defines the loss, metrics and outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor

from asr_transfer.backbones.base import Backbone
from asr_transfer.data.targets import Targets
from asr_transfer.utils.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)


class TransferTask(L.LightningModule):
    """Args:
    backbone: a built ``Backbone``.
    featurizer: partial taking ``num_layers`` and ``hidden_size``; it owns layer selection and
      ``output_size`` (the head's input size).
    optimizer: partial taking param groups (e.g. ``torch.optim.AdamW``); its ``lr`` is the head's rate.
    scheduler: partial ``(optimizer, total_steps) -> lr_scheduler config dict`` or None.
    backbone_lr: learning rate of the trainable backbone parameters (None: the optimizer's lr).
    max_nonfinite_steps: stop after this many non-finite losses in a row (each one is skipped).
    """

    def __init__(
        self,
        backbone: Backbone,
        featurizer: Callable,
        optimizer: Callable,
        scheduler: Callable | None = None,
        backbone_lr: float | None = None,
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.featurizer = featurizer(num_layers=backbone.num_layers, hidden_size=backbone.hidden_size)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.backbone_lr = backbone_lr
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self._resume_rng: dict | None = None  # set from a checkpoint, applied before the next step
        self.run_config: dict | None = None  # the resolved Hydra config, stored in every checkpoint
        # Frozen pretrained weights are not stored in checkpoints (reloaded from their source).
        self.strict_loading = False

    # ----- the protocol the pipeline calls -------------------------------------------------------
    @classmethod
    def make_targets(cls) -> Targets:
        """What this task learns from each manifest row (field, per-row target, batch collation)."""
        raise NotImplementedError(f"{cls.__name__} must say what its targets are (make_targets)")

    @staticmethod
    def data_kwargs(datamodule) -> dict:
        """Constructor arguments that come from the prepared data (never retyped in configs)."""
        return {}

    @staticmethod
    def checkpoint_kwargs(state: dict) -> dict:
        """The same arguments, read back from a checkpoint (what ``extra_checkpoint_state`` stored)."""
        return {}

    def extra_checkpoint_state(self) -> dict:
        """Plain values stored in every checkpoint's ``asr_transfer`` entry (labels, a tokenizer)."""
        return {}

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip of ``batch``: ``{"index": dataset index, ...what predict.py writes}``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_rows")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return self.predict_rows(batch)

    def test_artifacts(self) -> dict[str, dict]:
        """JSON files for the run directory after testing: ``{file name: content}``."""
        return {}

    # ----- features ----------------------------------------------------------------------------

    def encode(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """Featurized representation: frames (B, T, D) with frame lengths, or pooled (B, D) from stored features."""
        if "features" in batch:  # stored: (B, L, D) pooled or (B, L, T, D) frames of the featurizer's layers
            stack = batch["features"].transpose(0, 1).to(self.dtype_for_head())
            return self.featurizer(stack), batch.get("frame_lengths")
        hidden, frame_lengths = self.backbone(batch["wavs"], batch["lengths"])
        return self.featurizer(self.featurizer.select(hidden)), frame_lengths

    def dtype_for_head(self) -> torch.dtype:
        return next(self.featurizer.parameters(), next(self.parameters())).dtype

    # ----- optimisation ---------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Head + featurizer at the optimizer's lr, trainable backbone params at ``backbone_lr``.
        Frozen parameters are left out entirely, so they hold no optimizer state."""
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        body = [p for p in self.backbone.parameters() if p.requires_grad]
        groups = [{"params": head, "name": "head"}]
        if body:
            group = {"params": body, "name": "backbone"}
            if self.backbone_lr is not None:
                group["lr"] = self.backbone_lr
            groups.append(group)
        return groups

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, total_steps=total)}

    def guard_loss(self, loss: Tensor) -> Tensor | None:
        """Skip a non-finite loss (returning None skips backward and the step); stop after too many in a row."""
        if torch.isfinite(loss):
            self.nonfinite_in_a_row = 0
            return loss
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        log.warning(
            "non-finite loss at step %d skipped (%d in a row)", self.global_step, self.nonfinite_in_a_row
        )
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (task.max_nonfinite_steps): lower optimizer.lr, "
                "use trainer.precision=32 or bf16-mixed instead of 16-mixed, or check the data with check_data.py"
            )
        return None

    # ----- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["asr_transfer"] = {
            "config": self.run_config,
            "backbone_saved": not self.backbone.fully_frozen,
            "rng": rng_state(),  # so a resumed run draws the same dropout masks as an uninterrupted one
            "nonfinite_total": self.nonfinite_total,
            **self.extra_checkpoint_state(),
        }
        if self.backbone.fully_frozen:
            state = checkpoint["state_dict"]
            for k in [k for k in state if k.startswith("backbone.")]:
                del state[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is None or self.trainer.state.fn != "fit":
            return  # testing a checkpoint: keep this run's counters and random state
        state = checkpoint.get("asr_transfer") or {}
        self._resume_rng = state.get("rng")
        self.nonfinite_total = int(state.get("nonfinite_total", 0))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Restored here, not at load time: Lightning draws nothing between this point and the
        # checkpoint's own step in an uninterrupted run, so both runs continue identically.
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            self._resume_rng = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [
            k for k in result.missing_keys if not (k.startswith("backbone.") and self.backbone.fully_frozen)
        ]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"checkpoint does not match the model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        return result
