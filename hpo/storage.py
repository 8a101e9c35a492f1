"""Where studies live: an embedded SQLite file under runs/ by default, any Optuna RDB URL otherwise.

The storage carries Optuna's heartbeat: a running trial records a beat every ``interval`` seconds;
one silent for ``3 * interval`` (its process was killed, or its machine lost) is failed by the next
worker that looks, and its parameters are queued again (at most ``MAX_RETRY`` times).
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from hpo.errors import HpoError

# Relative to the current directory, like runs/ itself; optuna-dashboard 0.21 serves it offline.
DEFAULT_STORAGE = "sqlite:///runs/hpo.db"
HEARTBEAT_INTERVAL = 10  # seconds; each beat is one small write
GRACE_FACTOR = 3  # beats missed before a trial counts as lost
MAX_RETRY = 3
# Several workers may share one SQLite file: wait for its lock instead of failing at once.
SQLITE_TIMEOUT_S = 60


class StorageError(HpoError):
    """The storage URL is malformed or the database cannot be reached."""


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a lost or interrupted trial's parameters again, keeping its baseline mark and its
    ``origin`` (so the re-run trains with the same seed); nothing once ``MAX_RETRY`` re-runs of it
    exist. Used instead of Optuna's RetryHeartbeatStaleTrialCallback, which rebuilds the trial with
    ``create_trial``: that rejects a value outside its range, as the baseline's may be."""
    origin = int(trial.user_attrs.get("origin", trial.number))
    attempts = sum(t.user_attrs.get("origin") == origin for t in study.get_trials(deepcopy=False))
    if attempts > MAX_RETRY:
        return
    # The values it was queued with count too: a trial lost before it asked for them has none.
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    keep = {"is_baseline": bool(trial.user_attrs.get("is_baseline", False)), "origin": origin}
    study.enqueue_trial(params, user_attrs=keep)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for everything printed or stored."""
    return re.sub(r"(://[^/:@\s]*:)[^@/\s]*@", r"\1***@", url)


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {mask_url(url)}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL (None for other back-ends and in-memory SQLite)."""
    match = re.match(r"sqlite:///(.*)$", url)
    if not match or match.group(1) in ("", ":memory:"):
        return None
    return Path(match.group(1))


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3; the postgres extra installs psycopg2,
    so a plain URL names the driver that is actually installed."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return url


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL) -> RDBStorage:
    """Connect (creating Optuna's tables on first use); a failure names the masked URL."""
    if "://" not in url:
        hint = f"; for a file, use sqlite:///{url}" if url.endswith((".db", ".sqlite")) else ""
        raise StorageError(f"storage {url!r} is not a database URL like {DEFAULT_STORAGE}{hint}")
    given, url = url, with_driver(url)
    engine_kwargs: dict[str, object] = {}
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # heartbeat_interval and the retry callback are marked experimental by Optuna.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=GRACE_FACTOR * heartbeat_interval,
                heartbeat_stale_trial_callback=requeue,
            )
    except Exception as exc:  # sqlalchemy, a missing driver, a bad path: one message for all
        reason = " ".join(str(exc).split())
        password = re.search(r"://[^/:@\s]*:([^@/\s]+)@", url)
        if password:
            reason = reason.replace(password.group(1), "***")
        raise StorageError(
            f"cannot open storage {mask_url(given)}: {type(exc).__name__}: {reason[:300]}. "
            "Check the URL and that the database server is up and reachable; PostgreSQL "
            "also needs a driver: pip install 'hpo[postgres]'"
        ) from None
