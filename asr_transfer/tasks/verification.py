"""Speaker verification: an embedding per clip, trained with additive angular margin softmax (AAM,
ArcFace) over the training speakers, scored as trials by cosine similarity.

Manifests carry ``speaker``. Val and test speakers need not (and in a fair test do not) occur in
training: their clips are only embedded and compared. Trials are ``task.trials.<split>`` files
(``tasks/trials.py``) or every pair of the split's clips. Optional adaptive s-norm against a cohort of
training clips (``snorm_top_k``). Metrics: EER and minDCF at p_target 0.01 and 0.05.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.data.targets import Targets, natural_key
from asr_transfer.tasks.labelled import LabelledTask
from asr_transfer.tasks.trials import (
    adaptive_snorm,
    all_pairs,
    cosine_scores,
    read_trials,
    verification_metrics,
)
from asr_transfer.utils.jsonl import write_jsonl

log = logging.getLogger(__name__)


class SpeakerTargets(Targets):
    """``speaker`` per row; training speakers get class ids, others -1. Batches carry ``speakers`` (B,)."""

    field, skippable, required, fault_reason = "speaker", True, False, "bad_target"

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.index: dict[str, int] = {}

    def fit(self, entries: dict[str, list[Entry]], labels: list[str] | None = None) -> list[ManifestError]:
        faults = [
            ManifestError(
                e.manifest, e.line, "missing speaker: verification needs every clip's speaker", "speaker"
            )
            for rows in entries.values()
            for e in rows
            if not e.speaker
        ]
        train = {e.speaker for e in entries.get("train", []) if e.speaker}
        self.labels = list(labels) if labels else sorted(train, key=natural_key)
        self.index = {s: i for i, s in enumerate(self.labels)}
        return faults

    def encode(self, entry: Entry) -> int:
        return self.index.get(entry.speaker, -1)

    def collate(self, values: list) -> dict:
        return {"speakers": torch.tensor(values, dtype=torch.long)}


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (Deng et al. 2019): the target logit is ``s cos(theta + m)``,
    the others ``s cos(theta)``, theta the angle between the embedding and the class's weight."""

    def __init__(
        self, embedding_size: int, num_classes: int, margin: float = 0.2, scale: float = 30.0
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_size) * 0.01)
        self.margin, self.scale = margin, scale

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cos = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float())).clamp(
            -1 + 1e-7, 1 - 1e-7
        )
        # cos(theta + m) = cos cos m - sin sin m; past theta = pi - m it is no longer decreasing in
        # theta, so (as in ArcFace's "easy margin" alternative) fall back to cos - m sin m there
        sin = torch.sqrt(1 - cos**2)
        target = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        target = torch.where(
            cos > math.cos(math.pi - self.margin), target, cos - self.margin * math.sin(self.margin)
        )
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(onehot, target, cos)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class VerificationTask(LabelledTask):
    """``num_classes``: training speakers (the AAM-softmax's classes); ``speakers`` names them.
    ``margin``, ``scale``: AAM-softmax. ``trials``: ``{val: path, test: path}`` (null: all pairs).
    ``snorm_top_k``: adaptive s-norm with this many top cohort scores (null: raw cosine).
    ``on_bad_trial``: error | skip for trials naming a clip not in the split (the data's policy)."""

    names_key = "speakers"  # the training speakers: the AAM-softmax classes

    def __init__(
        self,
        num_classes: int,
        speakers: list[str] | None = None,
        margin: float = 0.2,
        scale: float = 30.0,
        trials: dict | None = None,
        snorm_top_k: int | None = None,
        on_bad_trial: str = "error",
        **parts,
    ) -> None:
        super().__init__(head_sizes={"num_classes": num_classes}, **parts)
        self.speakers = list(speakers) if speakers is not None else [str(i) for i in range(num_classes)]
        self.aam = AAMSoftmax(self.head.embedding_size, max(num_classes, 1), margin, scale)
        self.trials = dict(trials or {})
        self.snorm_top_k, self.on_bad_trial = snorm_top_k, on_bad_trial
        self.outputs: list[tuple[Tensor, Tensor]] = []
        self.skipped_trials: list[str] = []
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment"]
        )

    @classmethod
    def make_targets(cls) -> SpeakerTargets:
        return SpeakerTargets()

    def forward(self, batch: dict) -> Tensor:
        """Embeddings (B, embedding_size)."""
        return self.head(*self.encode(batch)).float()

    def training_step(self, batch: dict, batch_idx: int):
        keep = batch["speakers"] >= 0  # training clips all have a training speaker; be safe
        loss = self.aam(self(batch)[keep], batch["speakers"][keep])
        self.log("train/loss", loss, prog_bar=True, batch_size=int(keep.sum()))
        return self.guard_loss(loss)

    # ----- trials ----------------------------------------------------------------------------------
    @classmethod
    def file_faults(cls, settings, entries: dict[str, list[Entry]]) -> list[tuple[str, Exception, bool]]:
        """Each ``trials.<split>`` file against that split's clips: a line naming a clip not in the split
        (or malformed) is skipped under ``on_bad_trial=skip``; a missing file, or one with no usable
        trial, stops a run whatever the policy."""
        skip = settings.get("on_bad_trial", "error") == "skip"
        faults = []
        for split, path in (settings.get("trials") or {}).items():
            if not path or split not in entries:
                continue
            try:
                faults += [(split, f, skip) for f in read_trials(path, entries[split], skip=True)[3]]
            except ManifestError as e:
                faults.append((split, e, False))
        return faults

    def on_fit_start(self) -> None:
        """The trials files are read before the first step, not at the first val (or the test) epoch's
        end: a trial naming a clip not in its split stops the run here, under on_bad_trial=error."""
        super().on_fit_start()
        entries = getattr(self.trainer.datamodule, "entries", None) or {}
        settings = {"trials": self.trials, "on_bad_trial": self.on_bad_trial}
        for _, fault, skipped in self.file_faults(settings, entries):
            if not skipped:
                raise fault

    def on_validation_epoch_start(self) -> None:
        self.outputs = []

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.outputs = []

    def _collect(self, batch: dict | None) -> None:
        if batch is not None:
            self.outputs.append((batch["index"].cpu(), self(batch).cpu()))

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._collect(batch)

    def embeddings(self) -> Tensor:
        """This epoch's embeddings in dataset order (clips, embedding_size)."""
        index = torch.cat([i for i, _ in self.outputs])
        emb = torch.cat([e for _, e in self.outputs])
        out = torch.zeros(int(index.max()) + 1, emb.shape[1])
        out[index] = emb
        return out

    def score_split(
        self, split: str, entries: list[Entry], emb: Tensor
    ) -> tuple[dict, Tensor, Tensor, Tensor, Tensor]:
        path = self.trials.get(split)
        if path:
            enroll, test, target, faults = read_trials(path, entries, skip=self.on_bad_trial == "skip")
            self.skipped_trials += [str(f) for f in faults]
        else:
            enroll, test, target = all_pairs(entries)
        if self.snorm_top_k:
            scores = adaptive_snorm(emb, self.cohort(), enroll, test, self.snorm_top_k)
        else:
            scores = cosine_scores(emb, enroll, test)
        return verification_metrics(scores, target), enroll, test, target, scores

    @torch.no_grad()
    def cohort(self) -> Tensor:
        """Embeddings of the training split's clips (the s-norm cohort)."""
        was = self.training
        self.eval()
        out = []
        for batch in self.trainer.datamodule.train_dataloader():
            if batch is not None:
                batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out.append(self(batch).cpu())
        self.train(was)
        return torch.cat(out)

    def _end(self, split: str, loader) -> tuple | None:
        if not self.outputs:
            return None
        dataset = loader.dataset
        entries = getattr(getattr(dataset, "base", dataset), "entries", None) or dataset.entries
        result = self.score_split(split, entries, self.embeddings())
        for name, value in result[0].items():
            self.log(f"{split}/{name}", value)
        return (*result, entries)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._end("val", self.trainer.val_dataloaders)

    def on_test_epoch_end(self) -> None:
        result = self._end("test", self.trainer.test_dataloaders)
        if result is None:
            return
        _, enroll, test, target, scores, entries = result
        if self.trainer.is_global_zero and self.trainer.default_root_dir:  # every scored trial (the report)
            rows = [
                {"enroll": entries[a].audio_filepath, "test": entries[b].audio_filepath, "target": bool(t),
                 "score": round(float(s), 6)}
                for a, b, t, s in zip(enroll.tolist(), test.tolist(), target.tolist(), scores.tolist())
            ]  # fmt: skip
            write_jsonl(Path(self.trainer.default_root_dir) / "test_trials.jsonl", rows)
        if self.skipped_trials:
            log.warning("%d trial(s) skipped (task.on_bad_trial=skip):\n  %s", len(self.skipped_trials),
                        "\n  ".join(self.skipped_trials[:20]))  # fmt: skip

    def predict_files(self, rows: list[dict], entries: list[Entry], cfg) -> dict[str, list[dict]]:
        """``trials=<file>`` on predict.py: score it against the predicted clips' embeddings (cosine)."""
        if not cfg.get("trials"):
            return {}
        emb = torch.tensor([[float(v) for v in r["embedding"].split()] for r in rows])
        enroll, test, target, _ = read_trials(cfg.trials, entries)
        scores = cosine_scores(emb, enroll, test)
        out = [{"enroll": entries[a].audio_filepath, "test": entries[b].audio_filepath, "target": bool(t),
                "score": round(float(s), 6)}
               for a, b, t, s in zip(enroll.tolist(), test.tolist(), target.tolist(), scores.tolist())]  # fmt: skip
        return {"scores.jsonl": out, "trial_metrics.jsonl": [verification_metrics(scores, target)]}

    def predict_rows(self, batch: dict) -> list[dict]:
        """One row per clip: its (length-normalised) embedding, as a space-separated string."""
        emb = F.normalize(self(batch), dim=-1).cpu()
        return [
            {"index": i, "embedding": " ".join(f"{v:.6f}" for v in e.tolist())}
            for i, e in zip(batch["index"].tolist(), emb)
        ]
