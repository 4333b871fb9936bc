"""``eval.py`` / ``predict.py``: ``data.*`` overrides edit the checkpoint's own data config.

Before Hydra composes, the checkpoint's resolved data config is stored as the config group option
``data=checkpoint`` (the default of ``conf/eval.yaml`` and ``conf/predict.yaml``). Hydra then does the
rest the way it does for ``train.py``: ``data.root=/elsewhere`` edits that config (as NeMo's
``model.test_ds.*`` overrides edit a model's stored test set), ``data=manifest data.test_manifest=...``
replaces it like any group option, and ``--cfg job`` prints the data a run will use. The one thing Hydra
cannot do is name the valid keys of a config it only sees after composing, so a wrong key is caught here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

CHECKPOINT = "checkpoint"  # the data group option holding the checkpoint's data config


class DataOverrideError(ValueError):
    """A ``data.*`` override that the data config it would edit cannot take."""


def checkpoint_data(overrides: list[str]) -> dict:
    """Store the data config of the checkpoint named by ``ckpt_path=...`` as ``data=checkpoint``; returns it.

    ``overrides``: the command line (Hydra's flags such as ``-m`` or ``--cfg job`` are skipped). With no
    single ``ckpt_path`` (missing, or a sweep over several checkpoints) the option is empty and each job
    uses its own checkpoint's data unchanged.
    """
    parsed = OverridesParser.create().parse_overrides([a for a in overrides if "=" in a and a[0] != "-"])
    ckpt = next((o for o in parsed if o.key_or_group == "ckpt_path" and not o.is_delete()), None)
    edits = [o for o in parsed if o.key_or_group.startswith("data.")]
    switched = any(o.key_or_group == "data" for o in parsed)  # data=<corpus>: Hydra checks that config
    data: dict = {}
    if ckpt is not None and ckpt.is_sweep_override():
        if edits and not switched:
            raise DataOverrideError(
                f"{edits[0].input_line}: with several ckpt_path values each checkpoint keeps its own data "
                "config; evaluate them one at a time, or name the corpus (data=fsdd data.root=...)"
            )
    elif ckpt is not None:
        data = stored_data_config(ckpt.value())
        if not switched:
            for o in edits:
                check_key(o, data, ckpt.value())
    ConfigStore.instance().store(group="data", name=CHECKPOINT, node=data)
    return data


def stored_data_config(ckpt_path: str | Path) -> dict:
    """The resolved data config inside a checkpoint; mmap: the weights are not read."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(path)!r}: no such checkpoint (see <run dir>/checkpoints/)")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    config = state.get("asr_transfer", {}).get("config") or {}
    if "data" not in config:
        raise ValueError(
            f"ckpt_path={str(path)!r} was not written by asr_transfer (no resolved config inside)"
        )
    return config["data"]


def check_key(override: Override, data: dict, ckpt_path: str) -> None:
    """``data.rooot=...`` names the key, the checkpoint's valid keys and the two ways to go on."""
    if override.is_add() or override.is_force_add():  # +data.x / ++data.x: the user adds it on purpose
        return
    node, path = data, override.key_or_group.split(".")[1:]
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            here = ".".join(["data", *path[:i]])
            valid = sorted(node) if isinstance(node, dict) else []
            target = data.get("_target_", "?").rsplit(".", 1)[-1]
            raise DataOverrideError(
                f"{override.key_or_group}: no such key in the data config of ckpt_path={ckpt_path} "
                f"({target}). Valid keys of {here}: {', '.join(k for k in valid if k != '_target_')}. "
                f"To use another corpus, name it: data=<corpus> (conf/data/)."
            )
        node = node[part]


def checkpoint_data_or_exit(argv: list[str]) -> None:
    """The entry points' call: a wrong override ends the process with its message, not a traceback."""
    try:
        checkpoint_data(argv)
    except (DataOverrideError, FileNotFoundError, ValueError) as e:
        sys.exit(f"Error: {e}")
