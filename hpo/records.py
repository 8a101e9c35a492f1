"""What a study's records say, read the same way by hpo run's summary, finalize and the report:
its target, its baseline trial, a trial's per-epoch curves."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

# Trials that count towards a study's target.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# The finished trials the last ``hpo run`` asked for (--trials, else the spec's): what
# ``hpo finalize`` and the report measure the study against.
TARGET_ATTR = "trials_target"


def target_of(attrs: dict[str, Any]) -> int | None:
    """A study's target from its user attrs: ``TARGET_ATTR``, else its spec's ``trials``
    (studies from before the attr)."""
    spec = attrs.get("spec")
    for value in (attrs.get(TARGET_ATTR), spec.get("trials") if isinstance(spec, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def baseline_of(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The baseline: the first complete trial marked ``is_baseline`` (an interrupted attempt is
    queued again with the mark). One definition for the CLI, finalize and the report: a pruned or
    failed attempt is no baseline, its curve stops short of the tutorial's 20 epochs."""
    done = (t for t in trials if t.state == TrialState.COMPLETE)
    return next((t for t in done if t.user_attrs.get("is_baseline")), None)


def curve(trial: FrozenTrial, key: str) -> list[float]:
    """A per-epoch list; a non-finite value, stored as null (JSON has no NaN), comes back NaN."""
    values = (trial.user_attrs.get("curves") or {}).get(key) or []
    return [math.nan if v is None else float(v) for v in values]


def last_val_acc(trial: FrozenTrial) -> float | None:
    """Validation accuracy at the last finite epoch: the trial's value when that is the
    objective. One definition for hpo run's summary, finalize and the report."""
    finite = [v for v in curve(trial, "val_acc") if math.isfinite(v)]
    return finite[-1] if finite else None
