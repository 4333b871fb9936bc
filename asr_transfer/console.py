"""What a run prints: each line once on the console, and everything in ``<run dir>/train.log``.

``conf/hydra/default.yaml`` (``hydra.job_logging``) builds ``console_filter()`` for Hydra's console handler
only, so the lines it keeps off the screen still reach ``train.log``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from asr_transfer.utils.errors import ConfigError, UserError

log = logging.getLogger(__name__)
FILE_ONLY = "file_only"  # a record attribute: the record (a user error's traceback) goes to train.log only

# (logger, message pattern, why it stays off the console). Each is matched narrowly: the same logger
# says other things a user must see, and every other warning still shows.
NOISE = (
    (
        "lightning.pytorch.utilities.rank_zero",
        re.compile(r"^💡 Tip: .*\[lit(logger|models)\]\(https://pypi.org"),
        "advertisements for Lightning's cloud logger and model registry (litlogger, litmodels), printed by "
        "every Trainer: nothing to act on",
    ),
    (
        "py.warnings",
        re.compile(r"lightning[/\\]pytorch[/\\]utilities[/\\]_pytree\.py:\d+: .*LeafSpec.* is deprecated"),
        "torch deprecating an API that Lightning's own code calls, on every run: only a Lightning "
        "release can act on it",
    ),
)


class ConsoleNoise(logging.Filter):
    """Drops the records listed in ``NOISE``; attached to the console handler, never to ``train.log``'s."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, FILE_ONLY, False):
            return False
        message = record.getMessage()
        return not any(record.name == name and pattern.search(message) for name, pattern, _ in NOISE)


def console_filter() -> ConsoleNoise:
    """The console filter; Hydra's ``dictConfig`` calls this at the start of every job, before it
    configures the ``loggers`` of ``job_logging``.

    - Lightning's package ``__init__`` files give the ``lightning`` logger (and, when the root logger has
      no handler yet, ``lightning.pytorch`` / ``lightning.fabric``) a stderr handler of their own, while
      the records also propagate to Hydra's console and file handlers: every Lightning line printed twice.
      Importing Lightning here makes those handlers exist before ``job_logging.loggers`` removes them;
      imported later (inside the job) it would add them after Hydra's setup.
    - ``logging.captureWarnings``: Python warnings become log records (logger ``py.warnings``), so
      ``train.log`` keeps them and the console shows each once, through this filter.
    """
    import lightning  # noqa: F401

    logging.captureWarnings(True)
    return ConsoleNoise()


def user_error(exc: BaseException) -> UserError | None:
    """The user error behind ``exc`` (itself, or what it wraps: Hydra's ``instantiate`` re-raises a
    constructor's error as its cause), else None: a programming error.

    A config value left ``???`` (``data=folder`` without ``data.corpus.root``) is a user error too.
    """
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UserError):
            return exc
        if isinstance(exc, MissingMandatoryValue):
            key = exc.full_key or "a key"
            return ConfigError(
                f"{key} is not set (??? in the config)",
                f"key {key}{_config_file(key)}",
                f"give it: {key}=...",
            )
        exc = exc.__cause__ or exc.__context__
    return None


def _config_file(key: str) -> str:
    """`` of conf/data/folder.yaml`` when the key's first part is a config group this run chose."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    choice = HydraConfig.get().runtime.choices.get(key.split(".")[0])
    return f" of conf/{key.split('.')[0]}/{choice}.yaml" if choice else ""


@contextmanager
def user_errors() -> Iterator[None]:
    """An entry point's job runs inside this: a user error ends the process with its one line on the
    console (exit status 1) and the whole traceback in ``train.log``. Programming errors, and every error
    under ``HYDRA_FULL_ERROR=1``, propagate with their traceback. In a multirun the error propagates
    too (after the same log record), so the sweeper decides whether the sweep goes on."""
    try:
        yield
    except Exception as exc:
        err = user_error(exc)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err.error_line(), exc_info=exc, extra={FILE_ONLY: True})
        if _multirun():
            raise
        print(err.error_line(), file=sys.stderr, flush=True)
        sys.exit(1)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def console_logging(level: int = logging.INFO) -> None:
    """The console ``train.py`` gets from Hydra (conf/hydra/default.yaml), for drivers that call the pipeline
    without Hydra's job (the few-shot and layer-wise runners): one stderr handler on the root logger in
    Hydra's format, the ``ConsoleNoise`` filter on it, and Lightning's own handlers gone (their records
    reach the root's once)."""
    filt = console_filter()  # imports Lightning first, so its handlers exist to be removed
    handler = logging.StreamHandler(sys.stdout)  # where Hydra's console handler writes
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.addFilter(filt)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
