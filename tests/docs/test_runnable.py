"""Every shell block marked ``<!-- runnable -->`` in docs/ and README.md runs, as a reader would paste it.

A page's runnable commands run in order in one Python process (tests/docs/run_commands.py: each script
through runpy as ``__main__``, so Hydra parses the command line as in a shell, and torch is imported once
per page), in a scratch folder that has the entry points and conf/ (so relative paths such as
``outputs/first_probe`` land there). Each ``train.py``-style command gets tiny overrides
appended, chosen from what the command composes to: the tiny random model of its backbone family
(tests/presets.py), generated data laid out like its corpus (tests/config/small.py), one epoch on the
CPU, and a scratch features store. A documented key keeps its documented value unless it points at data
(a corpus root, a manifest): those are the generated ones. The test prints how many commands it ran.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asr_transfer.pipeline.plan import make_plan
from tests.config.small import DATA, cls_name
from tests.conftest import compose_train, write_tone_corpus
from tests.docs.commands import ROOT, commands, doc_files, first_values
from tests.fakes import fake_folder, fake_fsdd, fake_speech_commands
from tests.presets import TINY_OVERRIDES

pytestmark = pytest.mark.slow
ENTRY_POINTS = ("train.py", "eval.py", "predict.py", "check_data.py", "report.py", "conf")
DATA_PATH_KEYS = ("root", "_manifest")  # generated data replaces a documented path to data
RUNNER = Path(__file__).with_name("run_commands.py")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("doc-assets")
    return {
        "tones": write_tone_corpus(root / "tones", per_class=3),
        # 11 recordings per digit and speaker: data.corpus.label=speaker splits by recording index
        # (0-4 test, 5-9 val, 10+ train)
        "fsdd": fake_fsdd(root / "fsdd", per_digit=11),
        "folder": fake_folder(root / "folder"),
        "speech_commands": fake_speech_commands(root / "sc", per_word=3, noise_seconds=3.0),
    }


def probe_fits(cfg) -> bool:
    """Whether the run fits with the exact probe, as the plan says. A plan that cannot be made yet (a noise
    folder an earlier line of the page creates) is read from the config: waveform augmentation leaves
    the probe only stored augmented copies to fit on."""
    if cfg.get("probe") is None:
        return False
    try:
        return make_plan(cfg, "fit", overrides=[]).fit_with == "probe"
    except Exception:  # noqa: BLE001
        return bool((cfg.get("features") or {}).get("augmented_copies"))


def tiny(overrides: list[str], assets: dict, cache: Path, tmp: Path) -> list[str]:
    """What to append to a documented command so it runs in seconds on generated data."""
    cfg = compose_train(first_values(overrides), tmp / "compose")
    corpus = cfg.data.get("corpus")
    entry = DATA[cls_name(corpus._target_) if corpus else "manifests"][0](assets)
    documented = {o.split("=", 1)[0].lstrip("+~") for o in overrides}

    def keep(o: str) -> bool:
        key = o.split("=", 1)[0].lstrip("+")
        return key not in documented or key.endswith(DATA_PATH_KEYS)

    extra = [*TINY_OVERRIDES.get(cls_name(cfg.backbone._target_), []), *filter(keep, entry)]
    extra += [f"paths.cache_dir={cache}", "trainer.accelerator=cpu"]
    if not probe_fits(cfg):
        extra.append("trainer.max_epochs=1")  # the exact probe has no epochs, and refuses the setting
    extra.append("trainer.enable_progress_bar=false")
    if (cfg.get("callbacks") or {}).get("progress_bar") is not None:
        extra.append("callbacks.progress_bar=null")  # no Rich live display in captured output
    return extra


def page_commands(path: Path, assets: dict, tmp: Path) -> list[str]:
    """The page's runnable commands in page order, tiny overrides appended (shell-quoted)."""
    out = []
    for c in commands(path):
        if not c.runnable:
            continue
        extra = []
        if c.train_like:
            extra = tiny(c.overrides(), assets, tmp / "cache", tmp)
        elif c.script in ("eval.py", "predict.py"):
            extra = [f"paths.cache_dir={tmp / 'cache'}"]
        out.append(c.text + "".join(" " + shlex.quote(e) for e in extra))
    return out


PAGES = [p for p in doc_files() if any(c.runnable for c in commands(p))]
RAN: dict[str, int] = {}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_runnable_blocks_of_a_page_run(page, assets, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    for name in ENTRY_POINTS:  # the reader's checkout, with a scratch cwd for outputs/
        (work / name).symlink_to(ROOT / name)
    lines = page_commands(page, assets, tmp_path)
    (tmp_path / "commands.json").write_text(json.dumps(lines, indent=1))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HYDRA_FULL_ERROR": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(tmp_path / "commands.json")],
        cwd=work, env=env, capture_output=True, text=True, timeout=850,  # under make test's 900 s per test
    )  # fmt: skip
    count = len(lines)
    RAN[page.name] = count
    with capsys.disabled():
        print(
            f"\n{page.relative_to(ROOT)}: ran {count} documented commands (total so far {sum(RAN.values())})"
        )
    assert done.returncode == 0, (
        f"a runnable block of {page.relative_to(ROOT)} failed:\n"
        + "\n".join(lines)
        + "\n--- output (tail) ---\n"
        + (done.stdout + done.stderr)[-6000:]
    )
