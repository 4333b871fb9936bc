"""What a run prints: each line once on the console, and everything in ``<run dir>/train.log``.

``conf/hydra/default.yaml`` (``hydra.job_logging``) builds ``console_filter()`` for Hydra's console handler
only, so the lines it keeps off the screen still reach ``train.log``.
"""

from __future__ import annotations

import logging
import re

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
