"""Where studies live: an embedded SQLite file under runs/ by default, any Optuna RDB URL otherwise.

The storage carries Optuna's heartbeat: a running trial records a beat every ``interval`` seconds;
one silent for ``3 * interval`` (its process was killed, or its machine lost) is failed by the next
worker that looks, and its parameters are queued again (``hpo.lost_trials``).

Several worker processes share one storage (Optuna's distributed mode): SQLite for the workers of
one machine, PostgreSQL for many machines.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import re
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from hpo.errors import HpoError, causes
from hpo.lost_trials import requeue_stale
from hpo.storage_url import (
    DEFAULT_STORAGE,
    at_in_password,
    mask_text,
    mask_url,
    sqlite_path,
    with_driver,
)

HEARTBEAT_INTERVAL = 10  # seconds; each beat is one small write
GRACE_FACTOR = 3  # beats missed before a trial counts as lost
# Several workers may share one SQLite file: wait for its lock instead of failing at once.
SQLITE_TIMEOUT_S = 60
# A server that does not answer (a dead host, a firewall) fails a connect after this, not after
# the minutes a TCP timeout takes.
CONNECT_TIMEOUT_S = 10
# Workers that start together on a fresh database race to create Optuna's tables; the losers
# find them made and go on.
OPEN_ATTEMPTS = 3


class StorageError(HpoError):
    """The storage URL is malformed or the database cannot be reached."""


# Every engine this process opened, closed at exit: the ``hpo`` command skips Python's final
# garbage collection (hpo.cli.console), which used to close them, and an SQLite file in WAL mode
# keeps its last transactions in ``-wal`` beside it until its last connection closes.
_ENGINES: weakref.WeakSet[sqlalchemy.Engine] = weakref.WeakSet()


@atexit.register
def close_storages() -> None:
    for engine in list(_ENGINES):
        engine.dispose()


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL) -> RDBStorage:
    """Connect (creating Optuna's tables on first use); a failure names the masked URL."""
    if "://" not in url:
        hint = f"; for a file, use sqlite:///{url}" if url.endswith((".db", ".sqlite")) else ""
        raise StorageError(f"storage {url!r} is not a database URL like {DEFAULT_STORAGE}{hint}")
    if at_in_password(url):
        raise StorageError(
            f"storage {mask_url(url)}: its password contains @, which ends a password in a URL "
            "(the rest would be taken for the host). Fix: write each @ in it as %40"
        )
    given, url = url, with_driver(url)
    path = sqlite_path(url)
    if path is None and url.startswith("sqlite"):
        raise StorageError(
            f"storage {given!r} is an in-memory SQLite database: a study there is gone when hpo "
            "exits, and --jobs workers, optuna-dashboard and hpo report cannot open it; name a "
            f"file instead, e.g. {DEFAULT_STORAGE}"
        )
    if path is not None:
        _check_folder(path, given)
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            if path is not None:
                path.parent.mkdir(exist_ok=True)
            with warnings.catch_warnings():
                # heartbeat_interval and the retry callback are marked experimental by Optuna.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=GRACE_FACTOR * heartbeat_interval,
                    heartbeat_stale_trial_callback=requeue_stale,
                )
            if url.startswith("sqlite"):
                _serialize_sqlite(storage.engine)
            _ENGINES.add(storage.engine)
            return storage
        except Exception as exc:  # sqlalchemy, a missing driver, a bad path: one message for all
            if attempt < OPEN_ATTEMPTS and _creation_race(exc):
                time.sleep(random.uniform(0.1, 0.5))
                continue
            raise StorageError(
                f"cannot open storage {mask_url(given)}: {type(exc).__name__}: "
                f"{_driver_words(exc, url)} {_open_hint(url, exc)}"
            ) from None
    raise AssertionError("unreachable")


def set_heartbeat(storage: RDBStorage, interval: int) -> None:
    """Beat every ``interval`` seconds, and take a trial silent for ``GRACE_FACTOR`` times that
    as lost: ``open_storage``'s settings, changed once the study says which it uses."""
    storage.heartbeat_interval, storage.grace_period = interval, GRACE_FACTOR * interval


def _check_folder(path: Path, given: str) -> None:
    """The database's own folder is made (runs/ in a fresh checkout), but not the folders above
    it: a mistyped path would otherwise leave a tree of empty folders behind."""
    if path.is_dir():
        raise StorageError(
            f"cannot open storage {given!r}: {path} is a folder, not a database file; name a "
            f"file in it, e.g. sqlite:///{(path / 'hpo.db').as_posix()}"
        )
    if not path.parent.parent.is_dir():
        raise StorageError(
            f"cannot open storage {given!r}: the folder {path.parent.parent} does not exist. "
            f"Check the path (sqlite:///FILE is relative, sqlite:////FILE absolute) or create it "
            f"first: mkdir -p {path.parent}"
        )


def load_existing_study(url: str, name: str) -> tuple[RDBStorage, optuna.Study]:
    """A study ``hpo run`` made, that must exist already (``hpo report``, ``hpo finalize``): a
    missing storage or study is an error naming what exists, another tool's study one saying so,
    and a missing SQLite file is not created (with its folder) as opening it would."""
    path = sqlite_path(with_driver(url))
    # A missing file, and an empty one (which opening would make into an empty storage: a
    # read-only command writes nothing).
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        raise StorageError(
            f"no study storage at {path}{'' if not path.is_file() else ' (an empty file)'}: run "
            "`hpo run` first, or pass --storage URL"
        )
    storage = open_storage(url)  # its errors name the masked URL and the fix
    names = optuna.get_all_study_names(storage)
    if name not in names:
        there = ", ".join(sorted(names)) if names else "none"
        raise StorageError(
            f"no study named {name!r} in {mask_url(url)}; studies there: {there}. Pass --study "
            "NAME (and --storage URL)"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    if "spec_hash" not in study.user_attrs:  # hpo run writes it last, when the study is whole
        raise StorageError(
            f"study {name!r} in {mask_url(url)} was not made by `hpo run` (or its making was cut "
            "short): hpo reads only its own studies, whose trials record their training config. "
            f"Browse it with optuna-dashboard instead"
        )
    return storage, study


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # isolation_level=None: sqlite3 stops issuing its own deferred BEGIN, so that
        # _serialize_sqlite can issue BEGIN IMMEDIATE instead.
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S, "isolation_level": None}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a restarted server leaves dead sockets
    if url.startswith("postgres") and "connect_timeout" not in url:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _serialize_sqlite(engine: sqlalchemy.Engine) -> None:
    """Make every transaction on the file one serialized write transaction, in WAL mode.

    sqlite3 runs a SELECT outside any transaction, so Optuna's read-then-write steps (pop a
    queued trial, fail a stale one) are not atomic across processes: two workers could both pop
    the same queued trial. BEGIN IMMEDIATE takes the write lock first (waiting up to the timeout
    instead of failing with "database is locked"); WAL lets readers (the progress display,
    optuna-dashboard) go on while a worker writes. WAL is a property of the file, kept once set.
    """
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    sqlalchemy.event.listen(engine, "begin", _begin_immediate)


def _begin_immediate(conn: sqlalchemy.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _driver_words(exc: Exception, url: str) -> str:
    """The error's own words, masked, without SQLAlchemy's "(Background on this error at: ...)"
    link, which says nothing about this database."""
    words = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", str(exc))
    words = mask_text(words, url)[:300].rstrip(" .")
    return words if words.endswith(("?", "!")) else words + "."


def _open_hint(url: str, exc: Exception) -> str:
    """What to do, for the kind of failure: the fix for an unknown scheme or a missing driver
    differs from that for a server that does not answer."""
    scheme = url.partition("://")[0].split("+")[0]
    if isinstance(exc, sqlalchemy.exc.NoSuchModuleError):
        return (
            f"Unknown database kind {scheme!r}: use sqlite:///FILE (the default is "
            f"{DEFAULT_STORAGE}) or postgresql://USER:PASSWORD@HOST/DB (any SQLAlchemy URL "
            "that Optuna supports)"
        )
    if isinstance(exc, ImportError):
        missing = _missing_module(exc)
        kind = url.partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            module = f" (Python module {missing})" if missing else ""
            return f"The {kind} driver is not installed{module}: install it"
        if missing in (None, "psycopg"):
            return (
                "The PostgreSQL driver psycopg is not installed: pip install -e '.[postgres]' in "
                "hpo's checkout"
            )
        # A driver the URL names (postgresql+psycopg2://): hpo's extra installs another one.
        return (
            f"{kind}:// needs the Python module {missing}, which is not installed: pip install "
            f"{_PIP_NAMES.get(missing, missing)}, or write postgresql:// for psycopg 3 (which "
            "`pip install -e '.[postgres]'` in hpo's checkout installs)"
        )
    if scheme == "sqlite":
        return "Check that the file's folder can be written and the file is an SQLite database"
    return "Check the URL, the user and password, and that the database server is up and reachable"


_PIP_NAMES = {"psycopg2": "psycopg2-binary"}  # module -> what pip installs it as, prebuilt


def _missing_module(exc: BaseException) -> str | None:
    """The module whose import failed: Optuna raises its own ImportError from the driver's."""
    names = (e.name for e in causes(exc) if isinstance(e, ImportError) and e.name)
    return next((name.split(".")[0] for name in names), None)


def _creation_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in text


class StorageLostError(StorageError):
    """The storage stopped answering in the middle of a study."""


def storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database connection rather than from hpo or training."""
    return isinstance(
        exc, sqlalchemy.exc.SQLAlchemyError | optuna.exceptions.StorageInternalError
    ) or isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError)


# SQLite's and PostgreSQL's words for a write to a database this process may only read.
_READ_ONLY = re.compile(r"readonly database|read-only transaction|read-only file system", re.I)


def storage_lost(url: str, exc: BaseException) -> StorageLostError:
    """One message for a database that went away mid-study: masked URL, reason, what to do."""
    root = exc.__cause__ if isinstance(exc.__cause__, sqlalchemy.exc.SQLAlchemyError) else exc
    reason = getattr(root, "orig", None) or root  # the driver's words, without SQLAlchemy's SQL
    text = mask_text(str(reason), url)[:300].rstrip()
    if _READ_ONLY.search(text):
        return StorageLostError(
            f"cannot write to the storage {mask_url(url)}: it is read-only ({text.rstrip('.')}). "
            "Finished trials are kept. Make it writable (the database file's and its folder's "
            "permissions, a read-only mount; for PostgreSQL the user's rights or a read-only "
            "replica), or copy the file and pass --storage sqlite:///COPY.db, then rerun."
        )
    return StorageLostError(
        f"lost the storage {mask_url(url)}: {type(reason).__name__}: {text}"
        f"{'' if text.endswith(('.', '?', '!')) else '.'} Finished trials are kept; a trial that "
        "was running is failed and queued again by the next run. When the database is back, "
        "rerun the same command to go on."
    )


class Heartbeat:
    """Records a running trial's heartbeat now and then every interval, from a daemon thread.

    Replaces Optuna's own heartbeat thread, which dies with a traceback on the first failed
    write: here a beat that fails (the database away for a moment) is retried at the next one,
    quietly, since the main thread's next write reports a lasting outage, once.
    """

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._interval = storage.get_heartbeat_interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self._interval is None:
            return self
        # The first beat before training: a trial with none is never seen as stale.
        self._storage.record_heartbeat(self._trial_id)
        self._thread = threading.Thread(target=self._beat, name="hpo-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):
                self._storage.record_heartbeat(self._trial_id)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            # A beat stuck in a connect gives up after CONNECT_TIMEOUT_S; a daemon, it never
            # holds the process open.
            self._thread.join(timeout=(self._interval or 0) + CONNECT_TIMEOUT_S)


@contextlib.contextmanager
def reporting_loss(url: str) -> Iterator[None]:
    """Turn a database error raised inside the block into one StorageLostError naming ``url``."""
    try:
        yield
    except Exception as exc:
        if storage_failure(exc):
            raise storage_lost(url, exc) from None
        raise
