"""The shell commands the documentation shows: found in ``docs/**/*.md`` and README.md, split into
commands, and their Hydra overrides taken out, so tests can compose or run exactly what a reader copies.

A fenced ``bash`` block directly after a ``<!-- runnable -->`` line is *runnable*: the slow test runs
it whole, with tiny overrides appended. Every other ``bash`` block is still read: its ``train.py``-style
commands are composed (tests/docs/test_docs.py), so a renamed key fails either way.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable -->"
SHELL = ("bash", "sh", "shell", "console")
# Scripts whose trailing key=value arguments are train.yaml overrides.
TRAIN_LIKE = re.compile(
    r"^(?:[A-Z_]+=\S+\s+)*python\s+(?:train\.py|check_data\.py|-m\s+asr_transfer\.(?:fewshot|layerwise))(?=\s|$)"
)
PYTHON = re.compile(r"^(?:[A-Z_]+=\S+\s+)*python\s+(?P<script>-m\s+[\w.]+|\S+)")


@dataclass
class Command:
    path: Path
    line: int  # 1-based line of the command's first line in its file
    text: str  # continuation lines joined, trailing comment removed
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def script(self) -> str | None:
        m = PYTHON.match(self.text)
        return " ".join(m["script"].split()) if m else None

    @property
    def train_like(self) -> bool:
        return bool(TRAIN_LIKE.match(self.text))

    @property
    def multirun(self) -> bool:
        return any(t in ("-m", "--multirun") for t in self.tokens()[2:]) and self.script != "-m"

    def tokens(self) -> list[str]:
        """Shell words, each ``<placeholder>`` (``<run dir>``, ``<train.jsonl>``) read as a plain value."""
        return shlex.split(re.sub(r"<[^<>]*>", "PLACEHOLDER", self.text), comments=True)

    def overrides(self) -> list[str]:
        """The command's Hydra overrides (``key=value``, ``+key=...``, ``~key``), flags and their values left out."""
        out, tokens = [], self.tokens()
        start = next(i for i, t in enumerate(tokens) if t == "python") + 2
        if tokens[start - 1] == "-m":
            start += 1
        skip = False
        for t in tokens[start:]:
            if skip:
                skip = False
            elif t in ("--cfg", "-c", "--package", "-p", "--out", "--draws", "--seed"):
                skip = True  # a flag and its value
            elif t.startswith("-"):
                continue
            elif t.startswith("~") or ("=" in t and not t.startswith("--")):
                out.append(t)
        return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[tuple[int, bool, list[str]]]:
    """(first line number, runnable, lines) of every shell code block in a Markdown file."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*(\w*)", lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
        if m[2] in SHELL:
            prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found.append((i + 2, prev == MARKER, lines[i + 1 : end]))
        i = end + 1
    return found


def commands(path: Path) -> list[Command]:
    out = []
    for first, runnable, lines in blocks(path):
        text, start = "", None
        for n, line in enumerate(lines, first):
            stripped = line.strip()
            if not text and (not stripped or stripped.startswith("#")):
                continue
            start = n if not text else start
            if stripped.endswith("\\"):
                text += stripped[:-1] + " "
                continue
            text += stripped
            out.append(Command(path, start, _uncomment(text), runnable))
            text = ""
    return out


def _uncomment(text: str) -> str:
    """The command without its trailing ``  # comment`` (the docs' style: whitespace, then ``# ``)."""
    return re.split(r"\s+#(?:\s|$)", text, maxsplit=1)[0]


def first_values(overrides: list[str]) -> list[str]:
    """A sweep's overrides as one composable job: every sweep (``a,b``, ``choice``, ``range``,
    ``interval``) at its first value, so its key and option are checked like any other override."""
    parser, out = OverridesParser.create(), []
    for o in overrides:
        parsed = parser.parse_override(o)
        if not parsed.is_sweep_override():
            out.append(o)
            continue
        key = o.split("=", 1)[0]
        if parsed.is_discrete_sweep():
            out.append(f"{key}={next(iter(parsed.sweep_string_iterator()))}")
        else:  # interval(lo, hi), tagged or not
            out.append(f"{key}={parsed.value().start}")
    return out
