"""What every transfer task shares: backbone -> featurizer -> head, optimizer groups, lean checkpoints,
and the protocol the pipeline calls (the hooks below; nothing is looked up with ``hasattr``).

A task type (classification, CTC, a regression in tests/) is one module with a subclass that names
its targets (``make_targets``), builds its head, and defines the loss, metrics and outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor

from asr_transfer.backbones.adapters import parameter_counts
from asr_transfer.backbones.base import Backbone
from asr_transfer.data.leakage import training_fingerprint
from asr_transfer.data.targets import LabelTargets, Targets
from asr_transfer.featurizers import Featurizer
from asr_transfer.probe.objectives import SOFTMAX, Objective
from asr_transfer.stats import ClipMetric
from asr_transfer.tasks.param_groups import param_groups, with_backbone_warmup
from asr_transfer.tasks.spec_augment import SpecAugment
from asr_transfer.utils.jsonl import write_jsonl
from asr_transfer.utils.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)


class TransferTask(L.LightningModule):
    """Args (declared here once; a subclass takes its own and passes ``**parts`` on):
    backbone: a built ``Backbone`` (or the weightless card of stored features).
    featurizer: a built ``Featurizer`` (the pipeline builds it once, from the backbone's geometry); it
      owns layer selection and ``output_size`` (the head's input size).
    head: partial taking ``input_size`` (the featurizer's ``output_size``) and ``head_sizes``.
    head_sizes: the head's output sizes, from the subclass (``num_classes``, ``vocab_size``).
    optimizer: partial taking param groups (e.g. ``torch.optim.AdamW``); its ``lr`` is the head's rate.
    scheduler: partial ``(optimizer, total_steps) -> lr_scheduler config dict`` or None.
    backbone_lr: learning rate of the trainable backbone parameters (None: the optimizer's lr).
    max_nonfinite_steps: stop after this many non-finite losses in a row (each one is skipped).
    layer_lr_decay: layer-wise learning-rate decay from the top layer down (``tasks/param_groups.py``).
    backbone_warmup_steps: the backbone's rates also ramp up from 0 over this many optimizer steps.
    spec_augment: feature-level masks (``augment=specaugment``) applied in training after the featurizer.
    """

    # True when the task's head comes pretrained (Whisper's decoder): ``eval.py`` without ``ckpt_path``
    # then scores the model as it is (zero-shot); a new head must be trained first.
    zero_shot: bool = False

    def __init__(
        self,
        backbone: Backbone,
        featurizer: Featurizer,
        head: Callable,
        optimizer: Callable,
        head_sizes: dict,
        scheduler: Callable | None = None,
        backbone_lr: float | None = None,
        max_nonfinite_steps: int = 10,
        layer_lr_decay: float | None = None,
        backbone_warmup_steps: int = 0,
        spec_augment: SpecAugment | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec_augment = spec_augment
        self.featurizer = featurizer
        self.head = head(input_size=self.featurizer.output_size, **head_sizes)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.backbone_lr = backbone_lr
        self.layer_lr_decay, self.backbone_warmup_steps = layer_lr_decay, int(backbone_warmup_steps)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.test_rows: list[dict] = []  # one per test clip, with its dataset "index" (write_test_rows)
        self._resume_rng: dict | None = None  # set from a checkpoint, applied before the next step
        self.run_config: dict | None = None  # the resolved Hydra config, stored in every checkpoint
        # Frozen pretrained weights are not stored in checkpoints (reloaded from their source).
        self.strict_loading = False

    # ----- the protocol the pipeline calls -------------------------------------------------------
    # The exact probe (probe=lbfgs) solves this task's loss on stored pooled features (the objective is
    # ``probe_objective``); the run plan asks this before anything is built.
    exact_probe: ClassVar[bool] = False

    @classmethod
    def make_targets(cls) -> Targets:
        """What this task learns from each manifest row (field, per-row target, batch collation)."""
        raise NotImplementedError(f"{cls.__name__} must say what its targets are (make_targets)")

    @classmethod
    def file_faults(cls, settings, entries: dict[str, list]) -> list[tuple[str, Exception, bool]]:
        """Faults in files the task reads beside the manifests (verification: trials files), checked
        against each split's usable ``entries``: ``(split, ManifestError naming file and line, whether a
        run skips it)``. ``settings``: the task's config (``cfg.task``). check_data.py lists them."""
        return []

    @classmethod
    def run_targets(cls, cfg) -> Targets:
        """The targets of a run with this config (the datamodule's); a task whose targets depend on its
        settings (seq2seq: the decoder's positions, ``data.long_audio``) reads them here."""
        return cls.make_targets()

    @staticmethod
    def data_kwargs(datamodule) -> dict:
        """Constructor arguments that come from the prepared data (never retyped in configs)."""
        return {}

    @staticmethod
    def checkpoint_kwargs(state: dict) -> dict:
        """The same arguments, read back from a checkpoint (what ``extra_checkpoint_state`` stored)."""
        return {}

    @staticmethod
    def checkpoint_data_kwargs(state: dict) -> dict:
        """Datamodule arguments a checkpoint fixes for eval (e.g. the trained label order)."""
        return {}

    def extra_checkpoint_state(self) -> dict:
        """Plain values stored in every checkpoint's ``asr_transfer`` entry (labels, a tokenizer)."""
        return {}

    def probe_objective(self) -> Objective | None:
        """What the exact probe (``probe=lbfgs``) fits on stored pooled features (``probe/objectives.py``),
        for a task whose ``exact_probe`` is true. Class-label targets are multinomial logistic regression."""
        return SOFTMAX if isinstance(self.make_targets(), LabelTargets) else None

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip of ``batch``: ``{"index": dataset index, ...what predict.py writes}``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_rows")

    def predict_files(self, rows: list[dict], entries: list, cfg) -> dict[str, list[dict]]:
        """Files predict.py writes beside its predictions from all of them (``rows`` in input order, one
        per ``entries`` item): ``{file name: JSON rows}``; e.g. verification scores a trials file."""
        return {}

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return self.predict_rows(batch)

    def parameter_counts(self) -> dict[str, float]:
        """Trainable and total parameters (count, %) for the log and ``metrics.json``."""
        return parameter_counts(self)

    def test_artifacts(self) -> dict[str, dict]:
        """JSON files for the run directory after testing: ``{file name: content}``."""
        return {}

    test_rows_file: str | None = None  # where write_test_rows puts the per-clip test rows (compare reads it)

    @classmethod
    def clip_metrics(cls, rows: list[dict]) -> dict[str, ClipMetric]:
        """Each test metric (name without ``test/``) as a function of the test clips, from the rows
        ``test_step`` collects (and ``test_rows_file`` holds): what intervals and paired comparisons
        resample (``asr_transfer/stats.py``). A task without it gets no intervals."""
        return {}

    def test_clip_metrics(self) -> dict[str, ClipMetric]:
        """``clip_metrics`` of this test epoch's rows; none under DDP, where each rank holds only its share."""
        if not self.test_rows or (self._trainer is not None and self._trainer.world_size > 1):
            return {}
        return self.clip_metrics(sorted(self.test_rows, key=lambda r: r["index"]))

    def on_test_epoch_start(self) -> None:
        self.test_rows = []

    def write_test_rows(self, name: str) -> None:
        """``test_rows`` to ``<run dir>/<name>`` in dataset order, each with its clip's audio path
        (error analysis: the run report reads them)."""
        if not self.trainer.is_global_zero or not self.trainer.default_root_dir:
            return
        dataset = self.trainer.test_dataloaders.dataset
        entries = getattr(getattr(dataset, "base", dataset), "entries", None)
        rows = sorted(self.test_rows, key=lambda r: r["index"])
        if entries is not None:
            rows = [{"audio_filepath": entries[r["index"]].audio_filepath, **r} for r in rows]
        write_jsonl(Path(self.trainer.default_root_dir) / name, rows)

    # ----- features ----------------------------------------------------------------------------

    def encode(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """Featurized representation: frames (B, T, D) with frame lengths, or pooled (B, D) from stored features.
        In training, SpecAugment (if set) masks the frames here, whether computed now or stored."""
        if "features" in batch:  # stored: (B, L, D) pooled or (B, L, T, D) frames of the featurizer's layers
            stack = batch["features"].transpose(0, 1).to(self.dtype_for_head())
            rep, frame_lengths = self.featurizer(stack), batch.get("frame_lengths")
        else:
            hidden, frame_lengths = self.backbone(batch["wavs"], batch["lengths"])
            rep = self.featurizer(self.featurizer.select(hidden))
        if self.training and self.spec_augment is not None:
            rep = self.spec_augment(rep, frame_lengths, self.global_step, self.global_rank)
        return rep, frame_lengths

    def dtype_for_head(self) -> torch.dtype:
        return next(self.featurizer.parameters(), next(self.parameters())).dtype

    # ----- optimisation ---------------------------------------------------------------------------
    def param_groups(self, base_lr: float | None = None) -> list[dict]:
        """See ``tasks/param_groups.py``: frozen parameters are left out, so they hold no optimizer state."""
        return param_groups(self, self.backbone_lr, base_lr, self.layer_lr_decay)

    def configure_optimizers(self):
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")  # a partial's lr, the head's rate
        optimizer = self.optimizer_factory(self.param_groups(base_lr))
        scheduler = None
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(
                optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
            )
        scheduler = with_backbone_warmup(optimizer, scheduler, self.backbone_warmup_steps)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

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
            "backbone_saved": not self.backbone.fully_frozen,  # some backbone parameters train
            "rng": rng_state(),  # so a resumed run draws the same dropout masks as an uninterrupted one
            "nonfinite_total": self.nonfinite_total,
            # eval.py / predict.py warn when they meet these clips or speakers again (data/leakage.py)
            "training_data": training_fingerprint(getattr(self._trainer, "datamodule", None)),
            **self.extra_checkpoint_state(),
        }
        # Only what trained: the pretrained weights every frozen entry equals are reloaded from their source.
        state = checkpoint["state_dict"]
        for k in self.untrained_keys() & set(state):
            del state[k]

    def untrained_keys(self) -> set[str]:
        """State-dict keys of backbone entries that no phase trains: frozen parameters (all buffers
        too when nothing in the backbone trains). Checkpoints leave them out. A staged run keeps
        what a later phase unfreezes even while it is still frozen: loading an early-phase checkpoint
        (the best one, tested after training) must restore those layers' values at save time."""
        trains = {id(p) for p in self.backbone.ever_trainable()}
        keys = {f"backbone.{n}" for n, p in self.backbone.named_parameters() if id(p) not in trains}
        if self.backbone.fully_frozen:
            keys |= {f"backbone.{n}" for n, _ in self.backbone.named_buffers()}
        return keys

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is None or self.trainer.state.fn != "fit":
            return  # testing a checkpoint: keep this run's counters and random state
        state = checkpoint.get("asr_transfer") or {}
        self._resume_rng = state.get("rng")
        self.nonfinite_total = int(state.get("nonfinite_total", 0))

    def on_fit_start(self) -> None:
        if len(self.backbone.phases) > 1 and self.trainer.world_size > 1:
            # DDP registers the parameters that require grad when it wraps the model: ones unfrozen
            # later would train on each rank without their gradients being averaged.
            raise ValueError(
                "backbone.unfreeze (staged unfreezing) runs on one device only: use trainer=cpu or "
                "trainer=gpu with devices=1, or a fixed backbone.freeze under DDP"
            )

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # backbone.unfreeze: the phase is a function of the step / epoch alone, so a resumed run is in
        # the same phase as an uninterrupted one at every step.
        if self.backbone.set_phase(self.global_step, self.current_epoch):
            log.info(
                "step %d (epoch %d): backbone.unfreeze -> freeze=%s top_k=%d",
                self.global_step, self.current_epoch, self.backbone.freeze, self.backbone.top_k,
            )  # fmt: skip
        # Restored here, not at load time: Lightning draws nothing between this point and the
        # checkpoint's own step in an uninterrupted run, so both runs continue identically.
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            self._resume_rng = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        untrained = self.untrained_keys()
        missing = [k for k in result.missing_keys if k not in untrained]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"checkpoint does not match the model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        return result
