"""Documentation cannot silently rot (fast tier): every documented ``train.py`` command composes, the
generated configuration reference covers every group, option and key of conf/, every path a page names
exists, the Results pages include every study's README, and nothing points at the README sections that
moved to the site. The runnable blocks themselves run in tests/docs/test_runnable.py (slow tier).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import asr_transfer.config  # noqa: F401  (the ${asset:} and ${project_root:} resolvers, as the scripts)
from tests.conftest import CONF
from tests.docs.commands import ROOT, commands, doc_files, first_values

DOCS = ROOT / "docs"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def all_commands():
    return [c for f in doc_files() for c in commands(f)]


def test_every_documented_train_command_composes(tmp_path, capsys):
    """Each ``train.py`` / ``check_data.py`` / fewshot / layerwise command in a shell block composes with
    Hydra exactly as typed (sweeps at their first value): a renamed key or option fails here, naming the
    page and line."""
    checked, failures, results = 0, [], {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # once: composing is then cheap
        for c in all_commands():
            if not c.train_like:
                continue
            checked += 1
            try:
                overrides = tuple(first_values(c.overrides()))
            except Exception as e:  # noqa: BLE001 - not even Hydra's override syntax
                failures.append(f"{c.where}: {c.text}\n    {type(e).__name__}: {str(e).splitlines()[0]}")
                continue
            if overrides not in results:  # the same command on several pages is composed once
                try:
                    compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])
                    results[overrides] = None
                except Exception as e:  # noqa: BLE001 - every failing command is reported, not only the first
                    results[overrides] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            if results[overrides]:
                failures.append(f"{c.where}: {c.text}\n    {results[overrides]}")
    seen = results
    with capsys.disabled():
        print(
            f"\n{checked} documented train.py-style commands ({len(seen)} distinct) composed, from {len(doc_files())} pages"
        )
    assert checked >= 40, "the documented commands were not found: is the block parser broken?"
    assert not failures, "documented commands that no longer compose:\n" + "\n".join(failures)


def test_runnable_blocks_only_run_the_projects_scripts():
    scripts = {"train.py", "eval.py", "predict.py", "check_data.py", "report.py"}
    runnable = [c for c in all_commands() if c.runnable]
    assert len(runnable) >= 30
    for c in runnable:
        assert c.script in scripts or (c.script or "").startswith("-m asr_transfer."), (
            f"{c.where}: a runnable block may only call the entry points or python -m asr_transfer.*: {c.text}"
        )


def yaml_leaves(node, path=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from yaml_leaves(v, (*path, str(k)))
    elif path:
        yield ".".join(path)


def test_reference_has_every_group_option_and_key():
    gen = load("gen_config_reference")
    page = gen.page()
    conf = ROOT / "conf"
    files = sorted(conf.rglob("*.yaml"))
    assert len(files) > 60
    for f in files:
        option = gen.parse(f)
        assert f"### `{option.choice}`" in page, f"{f.relative_to(ROOT)} has no section in the reference"
        data = yaml.safe_load(f.read_text()) or {}
        for key in yaml_leaves({k: v for k, v in data.items() if k != "defaults"}):
            full = f"{option.prefix}.{key}" if option.prefix else key
            assert f"- `{full}`" in page, f"{f.relative_to(ROOT)}: key {full} missing from the reference"
    for group in gen.groups(conf):
        assert f"\n## {group}\n" in page


def test_reference_shows_defaults_and_comments():
    gen = load("gen_config_reference")
    page = gen.page()
    # a key's inline comment, a comment above a key, a defaults-list comment, a @package prefix
    assert "- `backbone.freeze` = `all`: all | none | feature_encoder | top_k" in page
    assert "- `features.mode` = `auto`: auto: encode only clips not stored yet" in page
    assert "- `probe: lbfgs`: exact fit of a frozen-feature probe" in page
    assert "- `backbone.adapter.rank` = `8`" in page
    assert "- `hydra.sweeper.n_trials` = `20`: trials in the study in all" in page
    assert "- `data.corpus.test_speakers` = `[yweweler]`" in page


def test_reference_keeps_comments_beside_values_of_a_tricky_file(tmp_path):
    gen = load("gen_config_reference")
    f = tmp_path / "group" / "opt.yaml"
    f.parent.mkdir()
    f.write_text(
        "# @package _global_\n# Header line.\ndefaults:\n  - base  # from base\n  - _self_\n\n"
        "a:\n  # above b\n  b: 'x # not a comment'  # beside b\n  c: [1, 2]\nd: ${a.b}\n"
    )
    option = gen.parse(f, tmp_path)
    assert option.header == ["Header line."] and option.prefix == ""
    assert option.defaults == [("base", "from base"), ("_self_", "")]
    keys = {k: (v, c) for k, v, c in option.keys}
    assert keys["a.b"] == ("'x # not a comment'", "above b beside b")
    assert keys["a.c"] == ("[1, 2]", "") and keys["d"] == ("${a.b}", "")


PATH = re.compile(
    r"`([A-Za-z0-9_.][A-Za-z0-9_./\-]*/[A-Za-z0-9_.\-]+(?:\.(?:py|yaml|md|toml|ipynb|png|csv))|[a-z_]+/)`"
)
# Names relative to a run directory or an output the reader makes, not to the repository.
NOT_REPO = ("outputs/", "multirun/", "csv/", "tensorboard/", "wandb/", "checkpoints/", "noise/", "rirs/", "clips/",
            "lm/", ".hydra/", "site/")  # fmt: skip


def test_every_path_a_doc_names_exists():
    """Inline code that names a repository file (``asr_transfer/...py``, ``conf/...yaml``...) must exist:
    at the root, or under asr_transfer/ for the code map's short paths."""
    missing = []
    files = [*doc_files(), *sorted((ROOT / "conf").rglob("*.yaml"))]
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in PATH.finditer(line):
                p = m[1]
                if p.startswith(NOT_REPO) or "<" in p or "*" in p:
                    continue
                if not any((base / p).exists() for base in (ROOT, ROOT / "asr_transfer")):
                    missing.append(f"{f.relative_to(ROOT)}:{n}: {p}")
    # README.md is not built by MkDocs (which checks the site's links): check its relative links here
    for n, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if not re.match(r"^[a-z]+:", target) and not (ROOT / target.split("#")[0]).exists():
                missing.append(f"README.md:{n}: link {target}")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_nothing_points_at_the_readme_sections_that_moved_to_the_site():
    stale = re.compile(r"README['’]s|\(README|top-level README|README[,:] |see README")
    hits = []
    for f in [*(ROOT / "conf").rglob("*.yaml"), *(ROOT / "experiments").glob("*/README.md"),
              *(ROOT / "asr_transfer").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:  # fmt: skip
        if f == Path(__file__):
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if stale.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "pointers at README sections that now live on the site (docs/):\n" + "\n".join(hits)
    for f, page in [
        ("conf/experiment/fsdd_digits_ctc.yaml", "docs/how-to/ctc.md"),
        ("conf/head/ctc_blstm.yaml", "docs/how-to/ctc.md"),
        ("conf/hparams_search/optuna.yaml", "docs/how-to/sweeps.md"),
        ("experiments/transfer_vs_scratch/README.md", "docs/how-to/probing.md"),
    ]:
        assert page in (ROOT / f).read_text(), f"{f} should point at {page}"


def test_results_pages_include_every_study_readme():
    gen = load("gen_results")
    studies = {s.name: s for s in gen.studies()}
    readmes = sorted((ROOT / "experiments").glob("*/README.md"))
    assert set(studies) == {r.parent.name for r in readmes}
    for readme in readmes:
        study = studies[readme.parent.name]
        tables = [ln for ln in readme.read_text().splitlines() if ln.startswith("|")]
        page = study.markdown.splitlines()
        assert all(t in page for t in tables if "](" not in t), f"{readme}: a table row is not on its page"
    assert any(f.name == "results.png" for f in studies["finetune_strategies"].files)


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in ("docs/getting-started.md", "docs/how-to/data.md", "docs/how-to/extras.md"):
        assert f"]({page}" in readme, f"README.md should link to {page}"


@pytest.mark.parametrize("name", ["gen_config_reference", "gen_results"])
def test_generators_are_importable_without_mkdocs(name):
    assert load(name) is not None
