"""The ``--jobs`` parent's view of the study for its one progress display: the trials that
finished since it last looked, in the order they ended, and the epochs of those running."""

from __future__ import annotations

import datetime as dt

import optuna
from optuna.trial import TrialState

from hpo.progress import Progress, Running
from hpo.storage import storage_failure
from hpo.study_summary import counts_of, outcome


class StudyWatch:
    """The parent's view of the study for its display: finished trials and running epochs."""

    def __init__(self, study: optuna.Study, target: int, epochs: int, progress: Progress) -> None:
        self._study, self._target, self._epochs = study, target, epochs
        self._progress = progress
        self._seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def __call__(self) -> None:
        try:
            trials = self._study.get_trials(deepcopy=False)
        except Exception as exc:  # the workers say what went wrong with the storage
            if not storage_failure(exc):
                raise
            return
        direction, clock = self._study.direction, dt.datetime.now()
        new = [t for t in trials if t.state.is_finished() and t.number not in self._seen]
        for t in sorted(new, key=lambda t: t.datetime_complete or clock):
            self._seen.add(t.number)
            # The study as it stood when this trial ended, so the lines read in order.
            then = [u for u in trials if not _ended_after(u, t)]
            took = t.duration.total_seconds() if t.duration else None
            now = counts_of(then, self._target, direction)
            self._progress.trial_finished(t.number, outcome(t), now, seconds=took)
        self._progress.running(
            [
                Running(
                    t.number,
                    done := int(t.user_attrs.get("epochs_run", len(t.intermediate_values))),
                    self._epochs,
                    _since(t, clock),
                    # stored with epochs_run at each epoch's end, from the trial's own start
                    t.user_attrs.get("wall_seconds") if done else None,
                )
                for t in trials
                if t.state == TrialState.RUNNING
            ]
        )


def _ended_after(u: optuna.trial.FrozenTrial, t: optuna.trial.FrozenTrial) -> bool:
    if not u.state.is_finished() or u.number == t.number:
        return False
    return (u.datetime_complete, u.number) > (t.datetime_complete, t.number)


def _since(t: optuna.trial.FrozenTrial, clock: dt.datetime) -> float:
    return max(0.0, (clock - t.datetime_start).total_seconds()) if t.datetime_start else 0.0
