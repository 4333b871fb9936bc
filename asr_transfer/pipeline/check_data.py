"""``check_data.py``: scan a data config the way ``train.py`` would read it and report every problem at once.

Unlike a run, which stops at the first fault (``data.on_bad_audio=error``), this reads every
manifest line, checks every header and decodes every file (content faults: NaN/Inf, a stream
that breaks off), then prints counts per reason and writes the full list to
``<run dir>/data_check.jsonl``. It builds the run's own datamodule (the backbone's sample rate and
minimum length, read from its class and config without loading weights; the task's targets) and
applies the run's own rules (``data/checks.py``, ``Targets.fit``), so what it reports is what a run does.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from asr_transfer.data.audio import REASONS, AudioError, check_content
from asr_transfer.data.datamodule import SPLITS
from asr_transfer.data.manifest import Entry, ManifestError
from asr_transfer.pipeline.build import build_datamodule
from asr_transfer.pipeline.plan import make_plan
from asr_transfer.pipeline.results import output_dir

log = logging.getLogger(__name__)

# error: a train.py run with this config stops; skipped: the run leaves the file out and goes on;
# note: the run uses the file, changed (cropped, zero-padded) or twice (duplicate).
SEVERITIES = ("error", "skipped", "note")
NOTES = {
    "manifest": "fix the manifest line (the message names the field)",
    "unseen_label": "this label never occurs in training: add training examples or drop these entries",
    "bad_target": "the row's target is unusable (the detail names the field): fix it, or data.on_bad_audio=skip",
    "empty_split": "every file of this split would be skipped: fix the files or the manifest",
    "duplicate": "the same file (and offset) is listed twice: both copies are used",
    "cropped": "longer than data.max_duration: only the first max_duration seconds are used",
    "padded": "shorter than the backbone's minimum: zero-padded to it",
    "long_transcript": "more tokens than the decoder's positions: split the recording (data.long_audio=skip leaves it out, crop cuts it)",
    "cropped_transcript": "cut to the decoder's positions (data.long_audio=crop): the end of the transcript is not learnt",
}


@dataclass
class Problem:
    split: str
    reason: str
    severity: str
    audio_filepath: str = ""
    manifest: str = ""
    line: int | None = None
    detail: str = ""


def check_datamodule(cfg: DictConfig):
    """The run's datamodule at the backbone's input rate and minimum length, without its weights."""
    settings = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone_cls = get_class(settings.pop("_target_"))
    plan = make_plan(cfg, "check")
    return build_datamodule(
        cfg, plan, backbone_cls.input_rate(**settings), backbone_cls.min_samples, run_dir=None
    )


def scan(cfg: DictConfig, dm=None) -> tuple[list[Problem], dict[str, int]]:
    """Every problem of every split, and the number of manifest entries per split."""
    dm = dm if dm is not None else check_datamodule(cfg)
    dm.prepare_data()
    paths = dm.manifests()
    problems: list[Problem] = []
    kept: dict[str, list[Entry]] = {}
    counts: dict[str, int] = {}

    def source(e: Entry, field: str, detail: str) -> str:  # the dataset row/column, for hub-style corpora
        origin = dm.corpus.origin(e, field) if dm.corpus is not None else None
        return f"{origin}: {detail}" if origin else detail

    def manifest_fault(split: str, e: ManifestError) -> None:
        problems.append(Problem(split, "manifest", "error", "", e.path, e.line, str(e)))

    for split in SPLITS:
        if not paths.get(split):
            continue
        try:
            entries = dm.read(split, paths[split], lambda e, s=split: manifest_fault(s, e))
        except ManifestError as e:  # the manifest itself: missing, not UTF-8, empty CSV
            manifest_fault(split, e)
            continue
        counts[split] = len(entries)
        kept[split] = []
        seen: dict[tuple, int] = {}
        for e in _progress(entries, split):
            where = dict(audio_filepath=e.audio_filepath, manifest=e.manifest, line=e.line)
            key = (e.audio_filepath, e.offset)
            if key in seen:
                problems.append(
                    Problem(split, "duplicate", "note", **where, detail=f"same as line {seen[key]}")
                )
            seen.setdefault(key, e.line)
            try:
                duration, findings = dm.rules.judge(e, check_content(e.audio_filepath))
            except AudioError as err:
                duration, findings = None, [dm.rules.bad_audio(err)]
            problems += [
                Problem(split, f.reason, f.severity, **where, detail=source(e, "audio_filepath", f.detail))
                for f in findings
            ]
            if duration is not None:
                kept[split].append(e)
        if counts[split] and not kept[split]:
            problems.append(Problem(split, "empty_split", "error", manifest=str(paths[split])))
    if kept.get("train") or dm.fixed_labels:  # what the targets cannot use (a label training never saw)
        where = {(e.manifest, e.line): (split, e) for split, rows in kept.items() for e in rows}
        targets = dm.targets  # skippable targets follow the run's policy (DataModule.fit_targets)
        severity = "skipped" if targets.skips(dm.rules.on_bad_audio) else "error"
        faults = [(f, targets.fault_reason, severity) for f in targets.fit(kept, dm.fixed_labels)]
        for fault, reason, sev in faults + [(n, targets.note_reason, "note") for n in targets.notes()]:
            split, e = where[(fault.path, fault.line)]
            problems.append(
                Problem(
                    split,
                    reason,
                    sev,
                    e.audio_filepath,
                    e.manifest,
                    e.line,
                    source(e, targets.field, str(fault)),
                )
            )
    task_class = get_class(cfg.task._target_)  # files the task reads beside the manifests (trials)
    for split, fault, skipped in task_class.file_faults(cfg.task, kept):
        severity = "skipped" if skipped else "error"
        problems.append(Problem(split, "bad_target", severity, "", fault.path, fault.line, str(fault)))
    return problems, counts


def _progress(entries: list, split: str):
    from rich.progress import track

    return track(entries, description=f"checking {split}", transient=True)


def report(problems: list[Problem], counts: dict[str, int], jsonl: Path | None, listed: int = 100) -> None:
    """A table of counts per (severity, reason) and what to do; then the problems themselves."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    by = Counter((p.severity, p.reason) for p in problems)
    table = Table(title="data check: " + ", ".join(f"{s} {n} entries" for s, n in counts.items()))
    for col in ("severity", "reason", "files", "what to do"):
        table.add_column(col)
    order = sorted(by, key=lambda k: (SEVERITIES.index(k[0]), -by[k], k[1]))
    for severity, reason in order:
        table.add_row(
            severity, reason, str(by[(severity, reason)]), NOTES.get(reason) or REASONS.get(reason, "")
        )
    if not problems:
        table.add_row("-", "none", "0", "every entry reads, decodes and is finite")
    console.print(table)
    shown = sorted(problems, key=lambda p: (SEVERITIES.index(p.severity), p.split, p.manifest, p.line or 0))
    for p in shown[:listed]:
        where = f"{p.manifest}:{p.line}" if p.line else p.manifest
        console.print(
            f"[{p.severity}] {p.split} {where} {p.audio_filepath} {p.reason} {p.detail}", markup=False
        )
    if len(shown) > listed:
        console.print(f"... and {len(shown) - listed} more", markup=False)
    if jsonl is not None:
        from asr_transfer.data.manifest import write_manifest

        write_manifest(jsonl, [asdict(p) for p in shown])  # atomic JSONL writer (no path rewriting)
        console.print(f"full list: {jsonl}", markup=False)


def check_data(cfg: DictConfig) -> int:
    """Scan, report; the exit status is 1 when a ``train.py`` run with this config would stop."""
    dm = check_datamodule(cfg)
    problems, counts = scan(cfg, dm)
    errors = sum(p.severity == "error" for p in problems)
    try:
        jsonl = output_dir(cfg) / "data_check.jsonl"
    except Exception:  # noqa: BLE001 - no run directory outside a Hydra app: console only
        jsonl = None
    report(problems, counts, jsonl, int(cfg.get("max_listed", 100)))
    if errors:
        log.error("%d problem(s) would stop a train.py run with this config (see the table above)", errors)
    elif cfg.get("features"):
        features_estimate(cfg, dm)
    return 1 if errors else 0


def features_estimate(cfg: DictConfig, dm) -> dict | None:
    """What the features store of a train.py run would encode and write, without encoding anything.
    ``dm``: the checked datamodule (the run's rate and rules); the backbone is its stored card when
    there is one, else it is loaded (the store's folder is keyed by its weights)."""
    from asr_transfer.features.card import CardBackbone
    from asr_transfer.pipeline.build import build_backbone, stored_sources

    plan = make_plan(cfg, "fit", overrides=[])
    if plan.store is None:
        print(f"features: not stored ({plan.not_stored})")
        return None
    backbone = CardBackbone(plan.card) if plan.card is not None else build_backbone(cfg)
    layers = plan.featurizer(num_layers=backbone.num_layers, hidden_size=backbone.hidden_size).layers
    dm.setup("fit")
    sources = stored_sources(plan, dm.datasets, int(cfg.data.get("seed", 0)))
    est = plan.store.estimate(backbone, sources, layers, plan.pooled)
    print(
        f"features: {est['clips']} clips to encode ({est['stored']} stored already), about "
        f"{est['bytes'] / 1e6:.1f} MB on disk ({'pooled' if plan.pooled else 'frames'}, "
        f"{plan.store.storage_dtype(plan.pooled)}, {len(layers)} layer(s)) in {plan.store.dir}; the pass's "
        "time is printed from its first batches"
    )
    return est
