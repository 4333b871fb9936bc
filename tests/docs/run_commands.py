"""Run documented shell commands one after another in this one interpreter (tests/docs/test_runnable.py).

``python tests/docs/run_commands.py commands.json`` with a JSON list of command lines. Each is what a
reader types, ``python <script> ...`` or ``python -m <module> ...``, optionally after ``VAR=value``
assignments and with ``$(ls <glob>)`` substitutions: the two pieces of shell the pages use. Scripts run
through ``runpy`` as ``__main__``, so ``@hydra.main`` parses the command line as it does in a shell, and
torch, Lightning and transformers are imported once per page instead of once per command.
"""

from __future__ import annotations

import glob
import json
import os
import re
import runpy
import shlex
import sys
import time


def substitute(command: str) -> str:
    """``$(ls a/b-*.ckpt)`` -> the matching paths (sorted, as ls prints them)."""
    return re.sub(r"\$\(ls ([^)]+)\)", lambda m: " ".join(sorted(glob.glob(m[1].strip()))), command)


def run(command: str) -> None:
    from hydra.core.global_hydra import GlobalHydra

    words = shlex.split(substitute(command))
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if words[:1] != ["python"]:
        raise SystemExit(f"not a python command: {command}")
    saved = dict(os.environ)
    os.environ.update(env)
    GlobalHydra.instance().clear()  # every @hydra.main run initialises it afresh
    try:
        if words[1] == "-m":
            sys.argv = [words[2], *words[3:]]
            runpy.run_module(words[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = words[1:]
            runpy.run_path(words[1], run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    for command in json.loads(open(sys.argv[1]).read()):
        print(f">>> {command}", flush=True)
        t0 = time.perf_counter()
        run(command)
        print(f"<<< {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
