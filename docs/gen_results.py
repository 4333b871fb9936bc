"""The Results pages, generated from ``experiments/*/README.md`` when the site is built (docs/hooks.py).

Each study's README is the single source of its tables (its script writes them from its CSVs): the site
shows it as ``results/<study>/index.md`` unchanged, except for links. A relative link to a file of the
study (a plot, a CSV) is served beside the page; a link to another study's README goes to that study's
page; any other relative link (code in the repository, outside the site) becomes plain code text, so
the page builds under ``mkdocs build --strict`` without copying anything into docs/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


@dataclass
class Study:
    name: str
    title: str
    summary: str  # the README's first paragraph
    markdown: str  # the page, links rewritten
    files: list[Path]  # study files the page links to (served beside it)

    @property
    def page(self) -> str:
        return f"results/{self.name}/index.md"


def _rewrite(study_dir: Path, text: str, files: list[Path]) -> str:
    def link(m: re.Match) -> str:
        target = m["target"]
        if re.match(r"^[a-z]+:|^#", target):  # https://..., mailto:, in-page anchors
            return m[0]
        path, _, anchor = target.partition("#")
        resolved = (study_dir / path).resolve()
        if resolved.parent == study_dir.resolve() and resolved.is_file() and resolved.name != "README.md":
            files.append(resolved)
            return m[0]
        if resolved.name == "README.md" and resolved.parent.parent == EXPERIMENTS.resolve():
            return f"{m['bang']}[{m['text']}](../{resolved.parent.name}/index.md{'#' + anchor if anchor else ''})"
        return f"{m['text']} (`{target}`)" if m["text"] else f"`{target}`"

    return LINK.sub(link, text)


def _summary(text: str) -> str:
    paras = [p.strip() for p in text.split("\n\n")]
    body = [p for p in paras if p and not p.startswith(("#", "```", "|", "!["))]
    # links are relative to the study's folder: on the index page only their text is kept
    return " ".join(LINK.sub(lambda m: m["text"], body[0]).split()) if body else ""


def studies(experiments: Path = EXPERIMENTS) -> list[Study]:
    found = []
    for readme in sorted(experiments.glob("*/README.md")):
        text = readme.read_text()
        title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), readme.parent.name)
        files: list[Path] = []
        markdown = _rewrite(readme.parent, text, files)
        found.append(Study(readme.parent.name, title, _summary(text), markdown, sorted(set(files))))
    return found


def index(found: list[Study]) -> str:
    out = [
        "# Results",
        "",
        "The studies under `experiments/`, each a script that runs presets and writes its tables from its",
        "CSVs into its README. These pages show those READMEs as they are in the repository (generated when",
        "the site is built, never copied), so a rerun study updates its page. Rerun one with the command at",
        "the top of its page.",
        "",
    ]
    for s in found:
        out += [f"## [{s.title}]({s.name}/index.md)", "", f"`experiments/{s.name}/`. {s.summary}", ""]
    return "\n".join(out)
