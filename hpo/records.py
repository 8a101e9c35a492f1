"""What a study's records say, read the same way by hpo run's summary, finalize and the report:
its target, its baseline trial, a trial's per-epoch curves, and the shapes of the test-set
records finalize and ``hpo report --confirm`` store on it (JSON in Optuna's user attrs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, NotRequired, TypedDict, cast

from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

# Trials that count towards a study's target.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# The finished trials the last ``hpo run`` asked for (--trials, else the spec's): what
# ``hpo finalize`` and the report measure the study against.
TARGET_ATTR = "trials_target"
# finalize's record (``Final``).
FINAL_ATTR = "final"
# --confirm's runs, one attr each (``confirm_run_key``): a run is one write, so two confirms of
# a study storing at once keep each other's runs. Versions before that kept them all in one attr,
# ``{"runs": [ConfirmRun, ...]}`` under ``CONFIRM_ATTR``, read, merged and written again, which
# loses a run when two store in the same instant; such studies are still read.
CONFIRM_ATTR = "confirm"
_CONFIRM_RUN_PREFIX = f"{CONFIRM_ATTR}:"


class Retrained(TypedDict):
    """A configuration trained on all 60,000 training images and scored on the test set
    (``hpo.retrain.Trained.record``); a non-finite number is stored as null."""

    config: dict[str, Any]
    test_acc: float | None
    test_loss: float | None
    seconds_per_epoch: float | None
    device: str
    status: str
    # Absent from records of older versions:
    threads: NotRequired[int | None]  # a CPU's intra-op threads (they change the rounding)
    versions: NotRequired[dict[str, str]]  # the libraries of the process that trained it


class FinalSide(Retrained):
    """finalize's record of the best trial or the baseline. The keys marked NotRequired are
    absent from records stored by older versions."""

    trial: int
    val_acc: float | None  # the trial's, from the search
    train_seconds: float | None
    param_count: int
    device_name: str
    epochs: NotRequired[int]
    compile: NotRequired[bool | None]  # as asked (None: the device's default)
    cached: NotRequired[bool]  # read from the model cache rather than trained
    model: NotRequired[str]  # the exported model's path on the machine that finalized


Role = Literal["best", "baseline"]


class Final(TypedDict):
    best: FinalSide | None
    baseline: FinalSide | None
    finalized_at: str


class ConfirmRun(Retrained):
    """One seed of one configuration retrained by ``hpo report --confirm``."""

    trial: int
    seed: int
    is_baseline: bool


def target_of(attrs: dict[str, Any]) -> int | None:
    """A study's target from its user attrs: ``TARGET_ATTR``, else its spec's ``trials``
    (studies from before the attr)."""
    spec = attrs.get("spec")
    for value in (attrs.get(TARGET_ATTR), spec.get("trials") if isinstance(spec, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def final_of(attrs: dict[str, Any]) -> Final | None:
    """finalize's record from a study's user attrs, if it has one."""
    final = attrs.get(FINAL_ATTR)
    return cast(Final, final) if isinstance(final, dict) else None


def models_text(found: dict[Role, str]) -> str:
    """finalize's exported files as one line: "runs/s/best.pt (best), ...: how to load them"."""
    paths = ", ".join(f"{path} ({role})" for role, path in found.items())
    return f"{paths}: hpo.retrain.load_model(path)"


def confirm_run_key(trial: int, seed: int) -> str:
    """The user attr that holds --confirm's run of ``trial`` with ``seed``."""
    return f"{_CONFIRM_RUN_PREFIX}{trial}:{seed}"


def store_confirm_run(study: Study, run: ConfirmRun) -> None:
    """Store one --confirm run on ``study``: one write of its own attr, nothing read first."""
    study.set_user_attr(confirm_run_key(run["trial"], run["seed"]), run)


def confirm_runs_of(attrs: dict[str, Any]) -> list[ConfirmRun]:
    """The --confirm runs stored on a study (none where it has none), by trial then seed: each
    run's own attr, and the runs of the one attr older versions kept (the run's own attr wins
    where both hold a trial and seed). One without a whole-number trial and seed is left out."""
    record = attrs.get(CONFIRM_ATTR)
    old = record.get("runs") if isinstance(record, dict) else None
    own = (v for k, v in attrs.items() if k.startswith(_CONFIRM_RUN_PREFIX))
    runs = {
        (r["trial"], r["seed"]): cast(ConfirmRun, r)
        for r in [*(old if isinstance(old, list) else []), *own]
        if isinstance(r, dict) and all(type(r.get(k)) is int for k in ("trial", "seed"))
    }
    return [runs[key] for key in sorted(runs)]


def _score(direction: StudyDirection) -> Callable[[FrozenTrial], tuple[float, int]]:
    """Larger is better: the objective in the study's direction, then the earlier trial."""
    sign = 1.0 if direction == StudyDirection.MAXIMIZE else -1.0
    return lambda t: (sign * (t.value if t.value is not None else math.nan), -t.number)


def ranked(trials: Iterable[FrozenTrial], direction: StudyDirection) -> list[FrozenTrial]:
    """Complete trials, best first in the study's direction; the earlier wins a tie. One
    definition of "best" for hpo run's summary and display, finalize and the report."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=_score(direction), reverse=True)


def best_of(trials: Iterable[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    """``ranked(trials, direction)[0]``, without the sort (the run's display asks every poll)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return max(done, key=_score(direction), default=None)


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


def trial_config(trial: FrozenTrial) -> dict[str, Any]:
    """The stored config; the sampled params fill in for a trial that failed before storing it,
    and the queued ones for a trial waiting to run (a lost trial's re-run, say)."""
    config = trial.user_attrs.get("config")
    if isinstance(config, dict):
        return dict(config)
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def epochs_run(trial: FrozenTrial) -> int:
    stored = trial.user_attrs.get("epochs_run")
    return int(stored) if stored is not None else len(curve(trial, "val_acc"))


def pruning_epochs(trials: Iterable[FrozenTrial]) -> tuple[int, int]:
    """(epochs the finished trials ran, epochs they would have run without pruning), each by
    its own config. A failed (diverged) trial stops whether or not a pruner runs: left out. One
    definition for hpo run's summary and the report."""
    finished = [t for t in trials if t.state in FINISHED]
    run = sum(epochs_run(t) for t in finished)
    planned = sum(int(trial_config(t).get("epochs") or epochs_run(t)) for t in finished)
    return run, planned


def saved_share(run: int, planned: int) -> float:
    """The share of ``planned`` epochs that pruning saved (``pruning_epochs``' two numbers)."""
    return 1 - run / planned if planned else 0.0
