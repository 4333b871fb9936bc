"""Speech recognition with CTC: frame-level head over a tokenizer's vocabulary, WER/CER, decoding."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.text import CharErrorRate, WordErrorRate

from asr_transfer.data.targets import TextTargets
from asr_transfer.stats import ClipMetric, ratio_metric
from asr_transfer.tasks.base import TransferTask
from asr_transfer.text.decoding import GreedyDecoder
from asr_transfer.text.errors import edit_counts
from asr_transfer.text.tokenizer import Tokenizer, tokenizer_from_state

log = logging.getLogger(__name__)


def ctc_frames_needed(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Fewest frames CTC can align each target to: one per token plus a blank between repeats.

    targets: (batch, max_tokens) padded; target_lengths: (batch,) -> (batch,)
    """
    if targets.shape[1] < 2:
        return target_lengths.clone()
    pos = torch.arange(1, targets.shape[1], device=targets.device)
    repeats = (targets[:, 1:] == targets[:, :-1]) & (pos < target_lengths.unsqueeze(1))
    return target_lengths + repeats.sum(1)


def ctc_loss_fp32(
    logits: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor, blank: int = 0
) -> tuple[Tensor | None, Tensor]:
    """Mean CTC loss (per target token) over the clips that have enough frames; computed in float32
    with autocast off, since half-precision CTC overflows (SpeechBrain #1803).

    logits: (B, T, V); frame_lengths: (B,); targets: (B, S) padded; target_lengths: (B,).
    Returns (loss or None when no clip is long enough, kept (B,) bool).
    """
    kept = (frame_lengths >= ctc_frames_needed(targets, target_lengths)) & (frame_lengths > 0)
    if not bool(kept.any()):
        return None, kept
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_probs = logits[kept].float().log_softmax(-1).transpose(0, 1)  # (T, B', V) as ctc_loss wants
        loss = F.ctc_loss(
            log_probs,
            targets[kept],
            frame_lengths[kept],
            target_lengths[kept],
            blank=blank,
            reduction="mean",
            zero_infinity=False,
        )
    return loss, kept


class CTCTask(TransferTask):
    """Args (``parts``: ``TransferTask``'s; its head is a partial taking ``input_size`` and
    ``vocab_size``, conf/head/ctc_*.yaml):
    tokenizer: partial ``texts -> Tokenizer`` (``fit_tokenizer``), used when training from scratch.
    decoding: partial ``tokenizer -> decoder`` (conf/decoding/*.yaml); None: greedy.
    texts: the training transcripts (given by ``data_kwargs``) that the tokenizer is fitted on.
    tokenizer_state: a fitted tokenizer's ``state()`` (given by ``checkpoint_kwargs``); wins over texts.
    log_examples: decoded validation examples logged per epoch.
    """

    def __init__(
        self,
        tokenizer: Callable[[list[str]], Tokenizer],
        decoding: Callable[[Tokenizer], Callable] | None = None,
        texts: list[str] | None = None,
        tokenizer_state: dict | None = None,
        log_examples: int = 3,
        **parts,
    ) -> None:
        if tokenizer_state is not None:
            fitted = tokenizer_from_state(tokenizer_state)
        elif texts:
            fitted = tokenizer(list(texts))
        else:
            raise ValueError(
                "CTCTask needs training transcripts (a manifest 'text' field) or a checkpoint's tokenizer"
            )
        super().__init__(head_sizes={"vocab_size": fitted.vocab_size}, **parts)
        self.tokenizer = fitted
        self.decoder = decoding(self.tokenizer) if decoding is not None else GreedyDecoder(self.tokenizer)
        self.log_examples = log_examples
        self.too_short_total = 0  # training clips skipped: fewer frames than CTC needs
        self.examples: list[tuple[str, str]] = []
        metrics = MetricCollection({"wer": WordErrorRate(), "cer": CharErrorRate()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "tokenizer", "decoding"]
            + ["texts", "tokenizer_state", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> TextTargets:
        return TextTargets()

    @staticmethod
    def data_kwargs(datamodule) -> dict:
        train = datamodule.entries.get("train")
        if not train:
            raise ValueError("task=ctc fits its tokenizer on the training split: the data has none")
        if any(e.text is None for e in train):
            raise ValueError(
                "task=ctc needs a 'text' field in every training manifest row (a manifest 'text' field)"
            )
        return {"texts": [e.text for e in train]}

    @staticmethod
    def checkpoint_kwargs(state: dict) -> dict:
        return {"tokenizer_state": state["asr_transfer"]["tokenizer"]}

    def extra_checkpoint_state(self) -> dict:
        return {"tokenizer": self.tokenizer.state()}

    # ----- model -----------------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[Tensor, Tensor]:
        """-> logits (B, T, vocab), frame lengths (B,)."""
        frames, frame_lengths = self.encode(batch)
        return self.head(frames, frame_lengths), frame_lengths.to(frames.device)

    def targets(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Token ids (B, S) padded with blanks, and lengths (B,), from the batch's transcripts."""
        ids = [self.tokenizer.encode(t) for t in batch["text"]]
        lengths = torch.tensor([len(i) for i in ids], dtype=torch.long, device=self.device)
        padded = torch.zeros(len(ids), max(1, int(lengths.max())), dtype=torch.long, device=self.device)
        for k, seq in enumerate(ids):
            padded[k, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return padded, lengths

    def _loss(self, batch: dict, split: str) -> tuple[Tensor | None, Tensor, Tensor]:
        logits, frame_lengths = self(batch)
        targets, target_lengths = self.targets(batch)
        loss, kept = ctc_loss_fp32(logits, frame_lengths, targets, target_lengths, self.tokenizer.blank)
        skipped = int((~kept).sum())
        if skipped and split == "train":
            if self.too_short_total == 0:
                log.warning(
                    "CTC: %d clip(s) in this batch have fewer frames than tokens (frames %s, tokens %s) and are "
                    "skipped; counted in train/too_short. Use a tokenizer with fewer tokens per second "
                    "(chars, not subwords) or a backbone with a higher frame rate",
                    skipped,
                    frame_lengths[~kept].tolist(),
                    target_lengths[~kept].tolist(),
                )
            self.too_short_total += skipped
        if loss is not None:
            self.log(f"{split}/loss", loss, prog_bar=split == "train", batch_size=int(kept.sum()))
        return loss, logits, frame_lengths

    def training_step(self, batch: dict, batch_idx: int):
        loss, _, _ = self._loss(batch, "train")
        self.log("train/too_short", float(self.too_short_total), reduce_fx="max", batch_size=1)
        return None if loss is None else self.guard_loss(loss)

    # ----- evaluation ------------------------------------------------------------------------------
    def transcribe(self, logits: Tensor, frame_lengths: Tensor) -> list[str]:
        return self.decoder(logits.float(), frame_lengths)

    def _eval_step(self, batch: dict, split: str, metrics: MetricCollection) -> tuple[list[str], list[str]]:
        _, logits, frame_lengths = self._loss(batch, split)
        hyps = self.transcribe(logits, frame_lengths)
        refs = [self.tokenizer.normalize(t) for t in batch["text"]]
        metrics.update(hyps, refs)
        self.log_dict(metrics, batch_size=len(refs))
        return hyps, refs

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        hyps, refs = self._eval_step(batch, "val", self.val_metrics)
        if len(self.examples) < self.log_examples:
            self.examples += list(zip(refs, hyps))[: self.log_examples - len(self.examples)]

    def on_validation_epoch_start(self) -> None:
        self.examples = []

    def on_validation_epoch_end(self) -> None:
        if not self.examples or self.trainer.sanity_checking:
            return
        lines = "\n".join(f"  ref: {r}\n  pred: {h}" for r, h in self.examples)
        log.info("epoch %d decoded validation examples:\n%s", self.current_epoch, lines)
        for logger in self.loggers:
            if hasattr(logger, "log_text"):  # W&B: a table per epoch
                logger.log_text(
                    "val/examples", columns=["ref", "pred"], data=[list(x) for x in self.examples]
                )
            elif hasattr(getattr(logger, "experiment", None), "add_text"):  # TensorBoard
                logger.experiment.add_text("val/examples", lines.replace("\n", "  \n"), self.global_step)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        hyps, refs = self._eval_step(batch, "test", self.test_metrics)
        for i, r, h in zip(batch["index"].tolist(), refs, hyps):
            self.test_rows.append({"index": i, "ref": r, "pred": h})  # the run files' vocabulary

    def on_test_epoch_end(self) -> None:
        """Every test transcript (ref, pred) to ``<run dir>/test_transcripts.jsonl`` (error analysis)."""
        self.write_test_rows(self.test_rows_file)

    test_rows_file = "test_transcripts.jsonl"

    @classmethod
    def clip_metrics(cls, rows: list[dict]) -> dict[str, ClipMetric]:
        """wer / cer: edit errors over reference words / characters, summed over clips (as torchmetrics)."""
        refs, hyps = [r["ref"] for r in rows], [r["pred"] for r in rows]
        words = edit_counts(refs, hyps, words=True)
        chars = edit_counts(refs, hyps, words=False)
        return {"wer": ratio_metric(*words), "cer": ratio_metric(*chars)}

    # ----- prediction ------------------------------------------------------------------------------
    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: dataset index and transcript (``pred``)."""
        logits, frame_lengths = self(batch)
        texts = self.transcribe(logits, frame_lengths)
        return [{"index": i, "pred": t} for i, t in zip(batch["index"].tolist(), texts)]
