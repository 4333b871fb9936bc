"""``eval.py`` / ``predict.py``: ``data.*`` overrides edit the checkpoint's own data config.

Before Hydra composes, the checkpoint's resolved data config is stored as the config group option
``data=checkpoint`` (the default of ``conf/eval.yaml`` and ``conf/predict.yaml``). Hydra then does the
rest the way it does for ``train.py``: ``data.corpus.root=/elsewhere`` edits that config (as NeMo's
``model.test_ds.*`` overrides edit a model's stored test set), ``data=manifest data.test_manifest=...``
replaces it like any group option, and ``--cfg job`` prints the data a run will use. The one thing Hydra
does not do is list the valid keys with a wrong one, so ``data.*`` keys are checked here first.
"""

from __future__ import annotations

import sys

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

import asr_transfer.config  # noqa: F401  (the empty data=checkpoint default first, then ours)
from asr_transfer.utils.errors import ConfigError, UserError

CHECKPOINT = "checkpoint"  # the data group option holding the checkpoint's data config


class DataOverrideError(ConfigError):
    """A ``data.*`` override that the data config it would edit cannot take."""


def checkpoint_data(overrides: list[str]) -> dict:
    """Store the data config of the checkpoint named by ``ckpt_path=...`` as ``data=checkpoint``; returns it.

    ``overrides``: the command line (Hydra's flags such as ``-m`` or ``--cfg job`` are skipped). With no
    single ``ckpt_path`` (missing, or a sweep over several checkpoints) the option is empty and each job
    uses its own checkpoint's data unchanged.
    """
    parsed = parse(overrides)
    ckpt = next((o for o in parsed if o.key_or_group == "ckpt_path" and not o.is_delete()), None)
    edits = [o for o in parsed if o.key_or_group.startswith("data.")]
    switch = next((o for o in parsed if o.key_or_group == "data"), None)  # data=<corpus>
    switched = switch is not None
    data: dict = {}
    if ckpt is not None and ckpt.is_sweep_override():
        if edits and not switched:
            raise DataOverrideError(
                "with several ckpt_path values each checkpoint keeps its own data config",
                f"override {edits[0].input_line}",
                "evaluate them one at a time, or name the corpus (data=fsdd data.corpus.root=...)",
            )
    elif ckpt is not None:
        from asr_transfer.checkpoint_io import load_checkpoint  # torch: only here

        data = load_checkpoint(ckpt.value(), mmap=True)["asr_transfer"]["config"]["data"]
    ConfigStore.instance().store(group="data", name=CHECKPOINT, node=data)
    if edits and switched and not switch.is_sweep_override():
        base, where = corpus_config(switch.value()), f"conf/data/{switch.value()}.yaml"
    elif edits and ckpt is not None and not ckpt.is_sweep_override():
        base, where = data, f"the data config of ckpt_path={ckpt.value()}"
    else:  # nothing to edit, or a sweep: Hydra checks each job's keys (naming the key only)
        return data
    for o in edits:
        check_key(o, base, where)
    return data


def parse(argv: list[str]) -> list[Override]:
    """The overrides of a command line (Hydra's flags such as ``-m`` or ``--cfg job`` skipped)."""
    return OverridesParser.create().parse_overrides([a for a in argv if "=" in a and a[0] != "-"])


def moved_key(key: str, data: dict) -> str | None:
    """``data.root`` where the data config has ``data.corpus.root``: the key's place now (a corpus's
    settings sit under ``data.corpus``), else None."""
    path, corpus = key.split(".")[1:], data.get("corpus")
    if len(path) == 1 and path[0] not in data and isinstance(corpus, dict) and path[0] in corpus:
        return f"data.corpus.{path[0]}"
    return None


def corpus_config(name: str) -> dict:
    """``conf/data/<name>.yaml`` as Hydra composes it (its own defaults included), unresolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(asr_transfer.config.compose([f"data={name}"]).data, resolve=False)


def check_key(override: Override, data: dict, where: str) -> None:
    """``data.corpus.rooot=...``: an error naming the key, the valid keys of the node it edits (and that
    node's class), and the way on."""
    if override.is_add() or override.is_force_add():  # +data.x / ++data.x: the user adds it on purpose
        return
    node, path = data, override.key_or_group.split(".")[1:]
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            here = ".".join(["data", *path[:i]])
            valid = sorted(node) if isinstance(node, dict) else []
            target = str(node.get("_target_", "?") if isinstance(node, dict) else "?").rsplit(".", 1)[-1]
            moved = moved_key(override.key_or_group, data)
            valid_keys = ", ".join(k for k in valid if k != "_target_")
            raise DataOverrideError(
                f"no key {override.key_or_group} in {where} ({target})",
                f"override {override.input_line}",
                (f"It is {moved} now (corpus settings sit under data.corpus): " if moved else "")
                + (override.input_line.replace(override.key_or_group, moved, 1) + "; " if moved else "")
                + f"valid keys of {here}: {valid_keys}; another corpus: data=<corpus> (conf/data/)",
            )
        node = node[part]


def checkpoint_data_or_exit(argv: list[str]) -> None:
    """The entry points' call: a wrong override ends the process with its message, not a traceback."""
    try:
        checkpoint_data(argv)
    except UserError as e:
        sys.exit(e.error_line())
    except HydraException as e:  # an override Hydra cannot parse: its own message names it
        sys.exit(f"Error: {e}")
