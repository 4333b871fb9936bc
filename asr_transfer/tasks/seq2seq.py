"""Speech recognition with Whisper's own decoder (``task=seq2seq``): encoder states -> pretrained decoder
-> tokens, trained with Whisper's token cross-entropy and decoded with ``generate``.

The encoder is the backbone (``backbone=whisper``, ``return_window=true``; frozen by default, then its
final states come from the features store and it never runs in training); the decoder is the head
(``head=whisper_decoder``). Nothing needs training to be evaluated: ``python eval.py experiment=...``
without ``ckpt_path`` scores the pretrained model as it is (``zero_shot``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate, WordErrorRate

from asr_transfer.backbones.adapters import parameter_counts
from asr_transfer.data.manifest import ManifestError
from asr_transfer.data.targets import TextTargets
from asr_transfer.stats import ClipMetric, mean_metric, ratio_metric
from asr_transfer.tasks.base import TransferTask
from asr_transfer.tasks.param_groups import param_groups
from asr_transfer.tasks.transcripts import DecoderTranscripts
from asr_transfer.text.errors import edit_counts
from asr_transfer.text.whisper import IGNORE, WhisperText, hallucinated, is_multilingual

log = logging.getLogger(__name__)

DECODING_KEYS = (
    "num_beams",
    "max_new_tokens",
    "length_penalty",
    "repetition_penalty",
    "no_repeat_ngram_size",
)


class Seq2SeqTask(TransferTask):
    """Args (``parts``: ``TransferTask``'s; the head is ``head=whisper_decoder``):
    language, task, prompt, normalizer: see ``text/whisper.py`` (``WhisperText``).
    decoding: ``generate`` settings on top of the checkpoint's generation config: num_beams (1: greedy),
      max_new_tokens (stops a runaway hallucination), length_penalty, repetition_penalty ...
    log_examples: decoded validation examples logged per epoch.
    """

    zero_shot = True  # the pretrained decoder transcribes before any training

    def __init__(
        self,
        language: str | None = None,
        task: str = "transcribe",
        prompt: str | None = None,
        normalizer: str = "english",
        decoding: dict | None = None,
        log_examples: int = 3,
        transcripts: list[tuple[str, int, str]] | None = None,
        **parts,
    ) -> None:
        super().__init__(head_sizes={}, **parts)
        backbone = self.backbone
        if not backbone.identity().startswith("whisper:") or ":return_window" not in backbone.identity():
            raise ValueError(
                "task=seq2seq reads Whisper encoder states over the whole window: use backbone=whisper with "
                f"backbone.return_window=true (conf/task/seq2seq.yaml sets it); got {backbone.identity()!r}"
            )
        if self.featurizer.layers != [backbone.num_layers - 1]:
            raise ValueError(
                "task=seq2seq: Whisper's decoder reads the encoder's final states: use featurizer=last"
            )
        unknown = set(decoding or {}) - set(DECODING_KEYS)
        if unknown:
            raise ValueError(f"task.decoding has unknown keys {sorted(unknown)}: use {list(DECODING_KEYS)}")
        config = self.head.config
        multilingual = is_multilingual(self.head.model.generation_config, config)
        self.text = WhisperText(self.head.name_or_path, multilingual, language, task, prompt, normalizer)
        self.decoding = {k: v for k, v in (decoding or {}).items() if v is not None}
        self.check_lengths(transcripts or [])
        self.log_examples = log_examples
        self.examples: list[tuple[str, str]] = []
        metrics = {
            "wer": WordErrorRate(), "cer": CharErrorRate(), "wer_raw": WordErrorRate(), "cer_raw": CharErrorRate(),
            "hallucination": MeanMetric(),
        }  # fmt: skip
        self.val_metrics = nn.ModuleDict({k: m.clone() for k, m in metrics.items()})
        self.test_metrics = nn.ModuleDict({k: m.clone() for k, m in metrics.items()})
        self.save_hyperparameters(
            ignore=["backbone", "featurizer", "head", "optimizer", "scheduler", "spec_augment", "transcripts"]
        )

    @classmethod
    def make_targets(cls) -> TextTargets:
        return TextTargets()

    @classmethod
    def run_targets(cls, cfg) -> DecoderTranscripts:
        """Transcripts checked against the decoder's positions before the run (``tasks/transcripts.py``)."""
        return DecoderTranscripts.from_config(cfg)

    @staticmethod
    def data_kwargs(datamodule) -> dict:
        """Every row's transcript with its manifest and line, checked against the decoder's positions."""
        rows = [e for split in datamodule.entries.values() for e in split]
        return {"transcripts": [(e.manifest, e.line, e.text) for e in rows if e.text is not None]}

    def check_lengths(self, transcripts: list[tuple[str, int, str]]) -> None:
        """Never truncate silently: a transcript longer than the decoder's positions stops the run,
        named by manifest and row."""
        limit = self.head.max_positions
        for manifest, line, text in transcripts:
            n = self.text.n_tokens(text)
            if n > limit:
                raise ManifestError(
                    manifest,
                    line,
                    f"the transcript takes {n} decoder positions (prompt + labels) but Whisper's decoder has "
                    f"{limit}: split the recording into shorter segments, or drop the row",
                    "text",
                )

    # ----- model -----------------------------------------------------------------------------------
    def loss(self, batch: dict) -> Tensor:
        """Whisper's token cross-entropy (mean over scored tokens), computed in float32."""
        frames, lengths = self.encode(batch)
        inputs, targets = self.text.teacher_forcing(batch["text"], frames.device)
        logits = self.head(frames, lengths, inputs)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def transcribe(self, batch: dict) -> list[str]:
        """Greedy decoding runs batched (``head.greedy``, equal to ``generate``); beam search and the
        other ``generate`` settings go through ``generate``, one call per encoder length."""
        frames, lengths = self.encode(batch)
        greedy = self.decoding.get("num_beams", 1) == 1 and set(self.decoding) <= {
            "num_beams",
            "max_new_tokens",
        }
        if greedy:
            prefix = self.text.prompt_ids + self.text.tokenizer.prefix_tokens
            ids = self.head.greedy(frames, lengths, prefix, self.decoding.get("max_new_tokens"))
        else:
            ids = self.head.generate(frames, lengths, **self.text.generate_kwargs(), **self.decoding)
        return self.text.decode(ids)

    def training_step(self, batch: dict, batch_idx: int):
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["text"]))
        return self.guard_loss(loss)

    # ----- evaluation ------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, split: str, metrics: nn.ModuleDict) -> tuple[list[str], list[str]]:
        n = len(batch["text"])
        self.log(f"{split}/loss", self.loss(batch), batch_size=n)
        refs, hyps = list(batch["text"]), self.transcribe(batch)
        norm_refs, norm_hyps = [self.text.normalize(t) for t in refs], [self.text.normalize(t) for t in hyps]
        metrics["wer"].update(norm_hyps, norm_refs)
        metrics["cer"].update(norm_hyps, norm_refs)
        metrics["wer_raw"].update([self.text.raw(t) for t in hyps], [self.text.raw(t) for t in refs])
        metrics["cer_raw"].update([self.text.raw(t) for t in hyps], [self.text.raw(t) for t in refs])
        metrics["hallucination"].update(torch.tensor([float(hallucinated(r, h)) for r, h in zip(refs, hyps)]))
        for k, m in metrics.items():
            self.log(f"{split}/{k}", m, batch_size=n)
        return refs, hyps

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        refs, hyps = self._eval_step(batch, "val", self.val_metrics)
        if len(self.examples) < self.log_examples:
            self.examples += list(zip(refs, hyps))[: self.log_examples - len(self.examples)]

    def on_validation_epoch_start(self) -> None:
        self.examples = []

    def on_validation_epoch_end(self) -> None:
        if self.examples and not self.trainer.sanity_checking:
            lines = "\n".join(f"  ref: {r}\n  hyp: {h}" for r, h in self.examples)
            log.info("epoch %d decoded validation examples:\n%s", self.current_epoch, lines)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        refs, hyps = self._eval_step(batch, "test", self.test_metrics)
        for i, r, h in zip(batch["index"].tolist(), refs, hyps):
            # ref / pred: the run files' one vocabulary (docs/concepts/run-directory.md)
            row = {"index": i, "ref": r, "pred": h, "ref_norm": self.text.normalize(r)}
            self.test_rows.append(
                {**row, "pred_norm": self.text.normalize(h), "hallucinated": hallucinated(r, h)}
            )

    def on_test_epoch_end(self) -> None:
        """Every test transcript to ``<run dir>/test_transcripts.jsonl`` (the run report shows the worst)."""
        self.write_test_rows(self.test_rows_file)

    test_rows_file = "test_transcripts.jsonl"

    @classmethod
    def clip_metrics(cls, rows: list[dict]) -> dict[str, ClipMetric]:
        """wer / cer on the normalised transcripts, wer_raw / cer_raw on the raw ones (edit errors over
        reference words / characters, summed over clips, as torchmetrics), hallucination: its share."""
        out = {}
        for suffix, ref, pred in (("", "ref_norm", "pred_norm"), ("_raw", "ref", "pred")):
            refs, preds = [r[ref] for r in rows], [r[pred] for r in rows]
            out[f"wer{suffix}"] = ratio_metric(*edit_counts(refs, preds, words=True))
            out[f"cer{suffix}"] = ratio_metric(*edit_counts(refs, preds, words=False))
        out["hallucination"] = mean_metric([float(r["hallucinated"]) for r in rows])
        return out

    def test_artifacts(self) -> dict[str, dict]:
        text = self.text
        settings = {"language": text.language, "task": text.task, "prompt": text.prompt}
        return {"decoding.json": {"normalizer": text.normalizer_name, **settings, **self.decoding}}

    def predict_rows(self, batch: dict) -> list[dict]:
        return [{"index": i, "text": t} for i, t in zip(batch["index"].tolist(), self.transcribe(batch))]

    # ----- what trains -----------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, float]:
        """``TransferTask``'s counts plus each stack's: encoder (backbone) and decoder (head)."""
        counts = parameter_counts(self)
        for stack, module in (("encoder", self.backbone), ("decoder", self.head)):
            c = parameter_counts(module)
            counts[f"params/{stack}_trainable"] = c["params/trainable"]
            counts[f"params/{stack}_trainable_pct"] = c["params/trainable_pct"]
        return counts

    def on_fit_start(self) -> None:
        super().on_fit_start()
        c = self.parameter_counts()
        log.info(
            "what trains: encoder %d (%.2f %%), decoder %d (%.2f %%) of %d parameters",
            c["params/encoder_trainable"], c["params/encoder_trainable_pct"],
            c["params/decoder_trainable"], c["params/decoder_trainable_pct"], c["params/total"],
        )  # fmt: skip

    def untrained_keys(self) -> set[str]:
        """The backbone's (``TransferTask``) plus every frozen decoder tensor (reloaded from the checkpoint
        it came from); the tied output projection is named too."""
        trains = {id(p) for p in self.head.parameters() if p.requires_grad}
        head = self.head.state_dict(keep_vars=True)
        return super().untrained_keys() | {f"head.{k}" for k, v in head.items() if id(v) not in trains}

    def param_groups(self, base_lr: float | None = None) -> list[dict]:
        """The backbone's groups (``backbone_lr``, ``layer_lr_decay``) and the decoder's at ``optimizer.lr``;
        with ``layer_lr_decay`` the decoder's layers decay from its top layer down in the same way."""
        groups = param_groups(self, self.backbone_lr, base_lr, self.layer_lr_decay)
        if self.layer_lr_decay is None or base_lr is None:
            return groups
        layers = self.head.transformer_layers()
        depth = {id(p): i + 1 for i, layer in enumerate(layers) for p in layer.parameters()}
        head_group = next(g for g in groups if g["name"] == "head")
        by_depth: dict[int, list] = {}
        for p in head_group["params"]:
            by_depth.setdefault(depth.get(id(p), len(layers)), []).append(p)  # embeddings, norm: top rate
        decoder = [
            {
                "params": ps,
                "name": f"decoder.layer{d}",
                "lr": base_lr * self.layer_lr_decay ** (len(layers) - d),
            }
            for d, ps in sorted(by_depth.items(), reverse=True)
        ]
        return [g for g in groups if g["name"] != "head"] + decoder
