"""Optuna studies shared by the sweeper (hydra_plugins/asr_optuna_sweeper) and the jobs it launches.

Both sides open the same storage from the same ``hydra.sweeper.storage`` string, so a job started
by submitit on another node reports to, and is pruned by, the study its sweeper created:

- ``sqlite:///path/study.db``: one machine (SQLite locks the whole file; NFS breaks its locks).
- ``journal:///abs/path/study.log`` (``journal://rel/path.log``): Optuna's append-only journal file,
  safe for several processes or nodes sharing a file system (NFSv3+: it locks with ``O_EXCL`` files).
- any other SQLAlchemy URL (``postgresql://user@host/db``): many nodes, through a database server.

Trials whose process died stay RUNNING in the storage; a heartbeat (Optuna's own for RDB storages, the
same interface on the journal through a system attribute) lets ``optuna.storages.fail_stale_trials``
mark them FAIL once ``grace_period`` seconds pass without one, while a live worker's trials keep beating.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # the interface fail_stale_trials checks for
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

JOURNAL = "journal://"
_HEARTBEAT_ATTR = "heartbeat"
# hydra.sweeper.pruner shorthands: Optuna's own defaults (tune one with a {_target_: ...} node instead)
PRUNERS = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner}


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus the heartbeat its RDB storage has: one way to find dead trials."""

    def __init__(self, path: str, heartbeat_interval: int, grace_period: int) -> None:
        super().__init__(JournalFileBackend(path))
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [
            t._trial_id
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if now - t.system_attrs.get(_HEARTBEAT_ATTR, now) > self.grace_period
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def storage_file(url: str | None) -> Path | None:
    """The file a sqlite:/// or journal:// URL names (None for a server or in-memory storage)."""
    if url and url.startswith(JOURNAL):
        return Path(url[len(JOURNAL) :])
    if url and url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def open_storage(url: str | None, heartbeat_interval: int = 10, grace_period: int = 30) -> BaseStorage | None:
    """``hydra.sweeper.storage`` -> an Optuna storage with heartbeats (None: in memory, this process only)."""
    if not url:
        return None
    path = storage_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith(JOURNAL):
        return HeartbeatJournalStorage(str(path), heartbeat_interval, grace_period)
    # SQLite: wait for a concurrent writer (another worker) instead of failing with "database is locked"
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():  # the heartbeat has been "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
            )
        except ImportError as e:  # SQLAlchemy imports the URL's database driver only here (Optuna rewraps it)
            cause = e.__cause__ if isinstance(e.__cause__, ImportError) else e
            raise ImportError(driver_missing(url, cause.name)) from e


def driver_missing(url: str, module: str | None) -> str:
    """One line naming the storage, the missing driver and the fix (the URL's password is left out)."""
    scheme = url.split(":", 1)[0]
    fix = (
        "pip install 'asr_transfer[postgres]' (psycopg 3, SQLAlchemy's default for postgresql://)"
        if scheme in ("postgresql", "postgresql+psycopg")
        else f"install the SQLAlchemy driver for {scheme}"
    )
    return (
        f"hydra.sweeper.storage={scheme}://...: its database driver {module} is not installed: {fix}, "
        "or use sqlite:///<path>/study.db (one machine) or journal:///<shared path>/study.log (several)"
    )


def make_pruner(spec: Any) -> optuna.pruners.BasePruner:
    """``hydra.sweeper.pruner``: null, ``median``, ``hyperband`` or a ``{_target_: optuna.pruners...}`` node."""
    if spec is None or spec == "null":
        return optuna.pruners.NopPruner()
    if isinstance(spec, optuna.pruners.BasePruner):  # a node Hydra has already built
        return spec
    if isinstance(spec, str):
        if spec not in PRUNERS:
            raise ValueError(
                f"hydra.sweeper.pruner={spec}: use one of {sorted(PRUNERS)}, null, "
                "or a node such as {_target_:optuna.pruners.MedianPruner,n_warmup_steps:2}"
            )
        return PRUNERS[spec]()
    pruner = instantiate(spec)
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise TypeError(f"hydra.sweeper.pruner built a {type(pruner).__name__}, not an optuna pruner")
    return pruner


@contextlib.contextmanager
def ask_lock(url: str | None) -> Iterator[None]:
    """Serialise "count the trials, then ask for more" between workers sharing a storage file, so that
    parallel workers stop at exactly n_trials. A server URL has no file to lock: workers may then
    overshoot by at most one trial each."""
    path = storage_file(url)
    if path is None:
        yield
        return
    lock = JournalFileOpenLock(str(path) + ".ask")  # a lock file of its own, not the journal's
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class Heartbeat:
    """Beats for trials while their jobs run (whichever process runs them): a context manager."""

    def __init__(self, storage: BaseStorage | None, trial_ids: list[int]) -> None:
        interval = storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="optuna-heartbeat")

    def _beat(self) -> None:
        for trial_id in self.trial_ids:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.storage.record_heartbeat(trial_id)  # a pruned trial is already finished

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self._beat()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.interval:
            self._stop.set()
            self._thread.join()
