"""Command-line keys checked before Hydra composes: a misspelled or moved key stops with the key to use.

Hydra alone answers ``optimiser.lr=1e-3`` with "use ``+optimiser.lr=1e-3``", which exits 0 and leaves
``optimiser: {lr: 0.001}`` unread in the saved config. Here every ``key=value`` override is looked up in
the config its group choices compose to, and a key that is not there ends the process with one line:
its new place when it moved (``data.root`` -> ``data.corpus.root``), else the closest valid keys (difflib).
An appended top-level key (``+optimiser.lr=...``) that nothing reads and that looks like a misspelled
key is refused the same way; keys appended under a part (``+trainer.max_steps=...``) reach that part's
class, which takes or rejects them.
"""

from __future__ import annotations

import difflib
import sys

from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import OmegaConf

import asr_transfer.config
from asr_transfer.pipeline.data_overrides import moved_key, parse
from asr_transfer.utils.errors import ConfigError

CONF = asr_transfer.config.PROJECT_ROOT / "conf"


def config_keys(cfg: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a config (nodes and leaves; lists are leaves)."""
    keys = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, dict):
            keys += config_keys(v, f"{key}.")
    return keys


def has_key(cfg: dict, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _node(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def closest(key: str, keys: list[str], n: int = 3) -> list[str]:
    """The valid keys nearest ``key`` by spelling; else the keys of its deepest existing parent."""
    near = difflib.get_close_matches(key, keys, n=n, cutoff=0.6)
    if near:
        return near
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:i])
        children = [k for k in keys if k.startswith(parent + ".") and k.count(".") == i]
        if children:
            return children
    return []


def is_group(o: Override) -> bool:
    return o.key_or_group.split("@")[0] in {p.name for p in CONF.iterdir() if p.is_dir()}


def key_error(o: Override, data: dict, keys: list[str], config_name: str) -> ConfigError | None:
    """The error for one override, or None when the key is fine."""
    key, line = o.key_or_group, o.input_line
    if o.is_delete() or has_key(data, key):
        return None
    if o.is_add() or o.is_force_add():
        top = key.split(".")[0]
        tops = [k for k in keys if "." not in k]
        near = difflib.get_close_matches(top, tops, n=3, cutoff=0.75)
        if top in tops or not near:  # under a part (its class reads it), or a new key on purpose
            return None
        return ConfigError(
            f"{line} adds a key that nothing reads ({top} is no part of the config)",
            "command line",
            f"{line.replace(top, near[0], 1).lstrip('+')} (closest valid keys: {', '.join(near)})",
        )
    moved = moved_key(key, data.get("data") or {}) if key.startswith("data.") else None
    if moved:
        return ConfigError(
            f"{key} is {moved} now (a corpus's settings sit under data.corpus)",
            "command line",
            line.replace(key, moved, 1),
        )
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    if (
        parent and has_key(data, parent) and _node(data, parent) == {}
    ):  # eval.py's trainer: {}, open to additions
        return ConfigError(
            f"no key {key} in the config ({parent} starts empty)", f"override {line}", f"+{line.lstrip('+')}"
        )
    near = closest(key, keys)
    suggestion = f"{line.replace(key, near[0], 1)} (closest valid keys: {', '.join(near)}). " if near else ""
    return ConfigError(
        f"no key {key} in the config",
        f"override {line}",
        f"{suggestion}Every key: python {config_name}.py --cfg job",
    )


def check_keys(
    argv: list[str], config_name: str = "train", skip: tuple[str, ...] = ("hydra.", "hydra/")
) -> None:
    """Raise ``ConfigError`` for the first override whose key the composed config lacks.

    Only the group choices (``head=mlp``, ``~probe``, ``experiment=...``) are composed; a sweep over
    groups, or a choice that does not exist, is left to Hydra (it lists the group's options).
    ``skip``: key prefixes checked elsewhere (``data.`` for eval/predict: the checkpoint's data).
    """
    from hydra import compose, initialize_config_dir

    try:
        parsed = parse(argv)
    except HydraException:
        return
    keys_given = [o for o in parsed if not is_group(o) and not o.key_or_group.startswith(skip)]
    if not keys_given:
        return
    groups = [o for o in parsed if is_group(o)]
    if any(o.is_sweep_override() for o in groups):
        return
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[o.input_line for o in groups])
    except Exception:  # noqa: BLE001  (a wrong group option: Hydra names it and its choices when the run composes)
        return
    data = OmegaConf.to_container(cfg, resolve=False)
    keys = config_keys(data)
    for o in keys_given:
        err = key_error(o, data, keys, config_name)
        if err is not None:
            raise err


def check_keys_or_exit(
    argv: list[str], config_name: str = "train", skip: tuple[str, ...] = ("hydra.", "hydra/")
) -> None:
    """The entry points' call: a wrong key ends the process with its one line."""
    try:
        check_keys(argv, config_name, skip)
    except ConfigError as e:
        sys.exit(e.error_line())
