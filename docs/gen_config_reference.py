"""The configuration reference page, generated from ``conf/`` when the site is built (docs/hooks.py).

The YAML files are the single source: every group, every option, every key with its default and the
comment written beside it (or on the lines above it). A new option is documented by writing its YAML.
Values come from PyYAML (what Hydra reads); comments come from a line walk of the same file, matched to
keys by their path, since YAML parsers drop comments.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PAGE = "reference/configuration.md"

# `key: value  # comment` (value may be empty: a mapping follows); a key never starts with '-' or '#'.
KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#\-][^:#]*?|\(\)):(?:\s+(?P<rest>.*))?$")
ITEM = re.compile(r"^(?P<indent> *)- ?(?P<rest>.*)$")


def split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes or without a space before it stays."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


@dataclass
class Option:
    """One YAML file of conf/: its header comment, package, defaults list and documented keys."""

    group: str  # "" for the entry points' own files (train.yaml ...)
    name: str
    header: list[str] = field(default_factory=list)
    package: str | None = None
    defaults: list[tuple[str, str]] = field(default_factory=list)  # (entry, comment)
    keys: list[tuple[str, str, str]] = field(default_factory=list)  # (dotted key, default, comment)

    @property
    def choice(self) -> str:
        return f"{self.group}={self.name}" if self.group else f"{self.name}.yaml"

    @property
    def prefix(self) -> str:
        """Where the file's keys land in the composed config (its ``@package``)."""
        if self.package is not None:
            return "" if self.package == "_global_" else self.package.replace("_group_", self.group)
        return self.group.replace("/", ".")


def comments(lines: list[str]) -> tuple[list[str], str | None, dict[tuple, tuple[str, str]], list]:
    """Header lines, @package, {key path: (raw value, comment)} and the defaults list's (entry, comment)."""
    header, package, found, defaults = [], None, {}, []
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line is inside
    pending: list[str] = []  # comment lines directly above the next key
    seen_key, skip_deeper_than, in_defaults = False, None, None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("@package"):
                package = text.split(None, 1)[1].strip()
            elif not seen_key:
                header.append(text)
            else:
                pending.append(text)
            continue
        if skip_deeper_than is not None and indent > skip_deeper_than:
            continue  # inside a list item's mapping: documented with its list
        skip_deeper_than = None
        item = ITEM.match(line)
        if item:
            value, comment = split_comment(item["rest"])
            if in_defaults is not None and indent >= in_defaults:
                defaults.append((value, " ".join([*pending, comment]).strip()))
            pending = []
            skip_deeper_than = indent
            continue
        match = KEY.match(line)
        if not match:
            continue
        seen_key = True
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value, comment = split_comment(match["rest"] or "")
        path = (*[k for _, k in stack], match["key"].strip())
        found[path] = (value, " ".join([*pending, comment]).strip())
        pending = []
        if path == ("defaults",):
            in_defaults = indent
        elif in_defaults is not None and indent <= in_defaults:
            in_defaults = None
        if not value:
            stack.append((indent, match["key"].strip()))
    return header, package, found, defaults


def leaves(node, path=()):
    """(path, value) for every leaf of a loaded YAML mapping; lists and empty mappings are leaves."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, (*path, str(k)))
    else:
        yield path, node


def show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def parse(path: Path, conf: Path = CONF) -> Option:
    rel = path.relative_to(conf).with_suffix("")
    group = "" if rel.parent == Path(".") else rel.parent.as_posix()
    text = path.read_text()
    header, package, found, defaults = comments(text.splitlines())
    option = Option(group, rel.name, header, package, defaults)
    data = yaml.safe_load(text) or {}
    for key_path, value in leaves({k: v for k, v in data.items() if k != "defaults"}):
        if not key_path:
            continue  # an empty file (e.g. adapter=none)
        raw, comment = found.get(key_path, ("", ""))
        scalar = not isinstance(value, list | dict) or value == {}
        option.keys.append((".".join(key_path), raw if raw and scalar else show(value), comment))
    # a mapping's own comment (e.g. `corpus:  # ...`) documents the node itself
    for key_path, (raw, comment) in found.items():
        if not raw and comment and key_path != ("defaults",):
            option.keys.append((".".join(key_path), "", comment))
    option.keys.sort(key=lambda k: _order(found, k[0]))
    return option


def _order(found: dict, dotted: str) -> int:
    paths = [".".join(p) for p in found]
    return paths.index(dotted) if dotted in paths else len(paths)


def md_text(text: str) -> str:
    """Comment text as Markdown: code spans kept, everything else HTML-escaped (``<run dir>`` stays text)."""
    parts = text.split("`")
    return "`".join(p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts))


def header(lines: list[str]) -> list[str]:
    """A file's leading comment: prose as paragraphs, command lines (``python ...``) as a shell block."""
    out, prose, commands = [], [], []
    for line in lines:
        if line.startswith(("python ", "torchrun ", "'")) or (commands and commands[-1].endswith("\\")):
            if prose:
                out += [md_text(" ".join(prose)), ""]
                prose = []
            commands.append(line)
        else:
            if commands:
                out += ["```text", *commands, "```", ""]
                commands = []
            prose.append(line)
    if prose:
        out += [md_text(" ".join(prose)), ""]
    if commands:
        out += ["```text", *commands, "```", ""]
    return out


def code(value: str) -> str:
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def render(option: Option) -> list[str]:
    out = [f"### `{option.choice}`", ""]
    out += header(option.header)
    if option.package == "_global_":
        out += ["`@package _global_`: the keys below are top-level (it may set several groups).", ""]
    elif option.package:
        out += [f"`@package {option.package}`: its keys land under `{option.prefix}`.", ""]
    if option.defaults:
        out.append("Defaults list:")
        out.append("")
        out += [f"- {code(e)}" + (f": {md_text(c)}" if c else "") for e, c in option.defaults]
        out.append("")
    for key, value, comment in option.keys:
        full = f"{option.prefix}.{key}" if option.prefix else key
        line = f"- {code(full)}" + (f" = {code(value)}" if value else "")
        out.append(line + (f": {md_text(comment)}" if comment else ""))
    if not option.keys and not option.defaults:
        out.append("No keys of its own.")
    out.append("")
    return out


def groups(conf: Path = CONF) -> dict[str, list[Path]]:
    """Config group -> its option files (nested groups as ``a/b``), in name order."""
    found: dict[str, list[Path]] = {}
    for f in sorted(conf.rglob("*.yaml")):
        rel = f.relative_to(conf)
        if len(rel.parts) > 1:
            found.setdefault(rel.parent.as_posix(), []).append(f)
    return found


def page(conf: Path = CONF) -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from `conf/` each time the site is built (`docs/gen_config_reference.py`): every config",
        "group, every option and every key with its default and the comment written beside it in the YAML.",
        "Choose an option with `group=option` on the command line, change a key with `key=value` (the full",
        "dotted key is shown), add one that is not there with `+key=value`. `???` marks a value you must give;",
        "`${...}` is an interpolation resolved when the run starts.",
        "",
        "## Entry points",
        "",
        "The primary configs of the scripts (`train.py`, `eval.py`, `predict.py`, `report.py`;",
        "`check_data.py` reads `train.yaml`).",
        "",
    ]
    for f in sorted(conf.glob("*.yaml")):
        out += render(parse(f, conf))
    for group, files in groups(conf).items():
        names = ", ".join(f"`{f.stem}`" for f in files)
        out += [f"## {group}", "", f"`{group}=` one of {names}.", ""]
        out += [line for f in files for line in render(parse(f, conf))]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(page())
