"""The stored study as the report reads it: trials, their states, the baseline and the best."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError

try:  # the study driver's storage module owns these; the fallbacks keep the same contract
    from hpo.storage import default_storage_url, mask_url
except ImportError:  # pragma: no cover - only until hpo.storage lands

    def default_storage_url() -> str:
        return "sqlite:///runs/hpo.db"

    def mask_url(url: str) -> str:
        return re.sub(r"(//[^:/@]+:)[^@/]*@", r"\1***@", url)


DEFAULT_STUDY = "mnist_mlp"

__all__ = ["DEFAULT_STUDY", "StudyData", "default_storage_url", "mask_url", "open_study"]


@dataclass(frozen=True)
class StudyData:
    """One read of a study: everything the report shows comes from this snapshot."""

    name: str
    storage: str  # masked: safe to print and to put in the report
    attrs: dict[str, Any]
    trials: tuple[FrozenTrial, ...]
    study: optuna.Study = field(repr=False, compare=False)

    def in_state(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.in_state(TrialState.COMPLETE) if t.value is not None]

    @property
    def partial(self) -> bool:
        """Trials still running (or left RUNNING by a killed run): the numbers may still move."""
        return bool(self.in_state(TrialState.RUNNING, TrialState.WAITING))

    @cached_property
    def baseline(self) -> FrozenTrial | None:
        """The tutorial's own configuration: the first trial marked ``is_baseline``."""
        return next((t for t in self.trials if t.user_attrs.get("is_baseline")), None)

    @cached_property
    def best(self) -> FrozenTrial | None:
        """Highest validation accuracy; the earliest trial wins a tie, as in Optuna."""
        done = self.complete
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def ranked(self) -> list[FrozenTrial]:
        return sorted(self.complete, key=lambda t: (-(t.value or 0.0), t.number))

    @property
    def final(self) -> dict[str, Any] | None:
        final = self.attrs.get("final")
        return final if isinstance(final, dict) else None

    def final_for(self, trial: FrozenTrial | None, role: str) -> dict[str, Any] | None:
        """The finalize record of ``role`` ("best" or "baseline") if it is about ``trial``: a
        study that went on after finalize has a new best whose test accuracy nobody measured."""
        record = (self.final or {}).get(role)
        if trial is None or not isinstance(record, dict) or record.get("trial") != trial.number:
            return None
        return record


def open_study(name: str, storage: str) -> StudyData:
    """Read ``name`` from ``storage``; a missing storage or study is an error naming what exists."""
    shown = mask_url(storage)
    path = _sqlite_path(storage)
    if path is not None and not path.is_file():
        # Opening it would create an empty database file as a side effect.
        raise HpoError(f"no study storage at {path}: run `hpo run` first, or pass --storage URL")
    try:
        names = optuna.get_all_study_names(storage)
    except Exception as exc:  # any driver error: unreachable host, bad URL, not a database
        raise HpoError(f"cannot read the study storage {shown}: {exc}") from exc
    if name not in names:
        there = ", ".join(sorted(names)) if names else "none"
        raise HpoError(f"no study named {name!r} in {shown}; studies there: {there}")
    study = optuna.load_study(study_name=name, storage=storage)
    trials = tuple(study.get_trials(deepcopy=False))
    return StudyData(name, shown, dict(study.user_attrs), trials, study)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    rest = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None
