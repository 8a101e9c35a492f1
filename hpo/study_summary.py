"""What a study stands at: the counts the progress display shows, each finished trial's outcome
as it says it, and the summary ``hpo run`` and ``hpo finalize`` print last."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.progress import Counts
from hpo.records import (
    Final,
    baseline_of,
    best_of,
    final_of,
    last_val_acc,
    pruning_epochs,
    saved_share,
    trial_config,
)
from hpo.storage_url import mask_url


@dataclass(frozen=True)
class TrialBrief:
    number: int
    value: float  # the objective
    val_acc: float | None  # final-epoch validation accuracy, whatever the objective
    params: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class StudySummary:
    study_name: str
    storage: str  # masked
    target: int
    complete: int
    pruned: int
    failed: int
    running: int
    epochs: int  # per trial
    epochs_run: int  # by the finished (complete + pruned) trials
    epochs_without_pruning: int  # what those trials would have run unpruned
    best: TrialBrief | None
    baseline: TrialBrief | None
    final: Final | None
    stopped_early: str = ""  # why the run ended before the target ("timeout"), else ""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    @property
    def epochs_saved(self) -> float:
        """The share of the finished trials' epochs that pruning saved."""
        return saved_share(self.epochs_run, self.epochs_without_pruning)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def counts(study: optuna.Study, target: int) -> Counts:
    return counts_of(study.get_trials(deepcopy=False), target, study.direction)


def counts_of(
    trials: list[FrozenTrial], target: int, direction: optuna.study.StudyDirection
) -> Counts:
    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    best = best_of(trials, direction)
    return Counts(
        target,
        n[TrialState.COMPLETE],
        n[TrialState.PRUNED],
        n[TrialState.FAIL],
        n[TrialState.RUNNING],
        best.value if best else None,
        best.number if best else None,
    )


def outcome(t: FrozenTrial) -> str:
    reason = t.user_attrs.get("reason", "")
    if t.state == TrialState.COMPLETE:
        return f"complete: {t.value:.4f}"
    if t.state == TrialState.PRUNED:
        return reason or "pruned"
    return f"failed: {reason}"


def summarize(
    study: optuna.Study, storage: RDBStorage, target: int, stopped: str = ""
) -> StudySummary:
    trials = study.get_trials(deepcopy=False)  # one read for everything below
    c = counts_of(trials, target, study.direction)
    epochs = int(study.user_attrs.get("epochs", 0))
    run, planned = pruning_epochs(trials)
    best, base = best_of(trials, study.direction), baseline_of(trials)
    return StudySummary(
        study.study_name,
        mask_url(storage.url),
        target,
        c.complete,
        c.pruned,
        c.failed,
        c.running,
        epochs,
        run,
        planned,
        _brief(best),
        _brief(base),
        final_of(study.user_attrs),
        stopped,
    )


def _brief(t: FrozenTrial | None) -> TrialBrief | None:
    if t is None or t.value is None:
        return None
    # trial_config: a trial told by hand (or by older code) may have no stored config
    return TrialBrief(t.number, t.value, last_val_acc(t), dict(t.params), trial_config(t))
