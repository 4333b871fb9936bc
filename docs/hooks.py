"""MkDocs hooks (mkdocs.yml `hooks:`): the pages generated at build time from the repository's own files.

- ``reference/configuration.md`` from ``conf/`` (docs/gen_config_reference.py);
- ``results/index.md`` and ``results/<study>/index.md`` from ``experiments/*/README.md``
  (docs/gen_results.py), with the files those READMEs link to, and one nav entry per study.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))  # hooks load by path: make the generators importable

import gen_config_reference  # noqa: E402
import gen_results  # noqa: E402

RESULTS = "Results"


def on_config(config):
    """The Results section of the nav: the index, then one page per study (found, not listed by hand)."""
    pages = [{s.title: s.page} for s in gen_results.studies()]
    for i, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and RESULTS in entry:
            config.nav[i] = {RESULTS: ["results/index.md", *pages]}
    return config


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, gen_config_reference.PAGE, content=gen_config_reference.page()))
    found = gen_results.studies()
    files.append(File.generated(config, "results/index.md", content=gen_results.index(found)))
    for s in found:
        files.append(File.generated(config, s.page, content=s.markdown))
        for f in s.files:
            files.append(File.generated(config, f"results/{s.name}/{f.name}", abs_src_path=str(f)))
    return files
