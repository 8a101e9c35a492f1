"""The search loop's housekeeping between trials: lost trials failed and said, and the wait while
the study's last trials run elsewhere (``hpo.lost_trials`` fails and re-queues them).

A trial is lost three ways: its process on this machine has ended (``hpo.liveness``), its
heartbeat went silent (Optuna's ``fail_stale_trials``), or it never beat at all (``Orphans``,
swept while waiting, where such a trial would hold the study up for good).
"""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.liveness import is_gone
from hpo.lost_trials import MAX_RETRY, Orphans, fail_lost, not_requeued
from hpo.progress import Counts, Progress
from hpo.storage import GRACE_FACTOR
from hpo.trial import UNFINISHED

# How often a worker with no free place looks again: the place may open (a trial failed) or the
# study may be done, and the parent of --jobs workers waits for the last of them to notice. A
# few small queries a poll, and only while the study's last trials run elsewhere.
WAIT_POLL_S = 0.25


class Sweeper:
    """One search loop's sweeps for lost trials and its waits, saying each to ``progress``."""

    def __init__(self, study: optuna.Study, storage: RDBStorage, progress: Progress) -> None:
        self._study, self._progress = study, progress
        heartbeat = storage.get_heartbeat_interval()
        self._interval = heartbeat or 1
        self._grace = GRACE_FACTOR * self._interval  # silent this long, a trial counts as lost
        self._silent = f"no heartbeat for {self._grace} s"
        # Without heartbeats (a storage opened without them) no trial can be told apart as lost.
        self._orphans = Orphans(study, storage, self._grace) if heartbeat is not None else None
        self._waited_on: list[int] | None = None

    def sweep(self) -> list[FrozenTrial]:
        """Fail the running trials found lost, queue their parameters again and say so; returns
        the study's trials as they stand after."""
        study, progress = self._study, self._progress
        before = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        # Those whose process on this machine has ended: lost now, not after the grace
        # (hpo.liveness), so a run restarted at once goes on as one run straight through.
        dead = [t for t in before if is_gone(t.user_attrs.get("process"))]
        # Not those another worker failed first: their heartbeat was not what said so.
        gone = [n for t in dead if (n := fail_lost(study, t._trial_id)) is not None]
        if gone:
            ended_here = "their process on this machine has ended"
            progress.lost(gone, not_requeued(study.get_trials(deepcopy=False), gone),
                          ended_here, MAX_RETRY)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if lost := [n for n in _lost(before, trials) if n not in {t.number for t in dead}]:
            progress.lost(lost, not_requeued(trials, lost), self._silent, MAX_RETRY)
        return trials

    def wait(self, counts: Counts) -> None:
        """One poll of the wait for the running trials that hold the study's last places: says
        which they are when that changes, then fails the orphans past their grace or sleeps."""
        study = self._study
        running = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
        if running != self._waited_on:  # say it once, not every poll
            self._progress.waiting(running, self._grace, counts)
            self._waited_on = running
        if self._orphans is not None and (ended := self._orphans.sweep()):  # queued again
            dropped = not_requeued(study.get_trials(deepcopy=False), ended)
            self._progress.lost(ended, dropped, self._silent, MAX_RETRY)
            return  # their places may be free now: no sleep before the next look
        time.sleep(min(self._interval, WAIT_POLL_S))


def _lost(before: list[FrozenTrial], trials: list[FrozenTrial]) -> list[int]:
    """The trials running in ``before`` that the stale check has since failed: their reason is
    still the one a trial carries until it ends (its process was killed), or they have none
    (killed between their first heartbeat and their first attributes)."""
    now = {t.number: t for t in trials}
    return [
        t.number
        for t in before
        if now[t.number].state == TrialState.FAIL
        and now[t.number].user_attrs.get("reason", UNFINISHED) == UNFINISHED
    ]
