"""Trials that ended without an outcome, and their parameters queued again.

A running trial whose process was killed, or whose machine was lost, stays RUNNING in the
storage: it is failed and re-queued when its heartbeat is 3 intervals old (Optuna's stale check,
calling ``requeue_stale``), when it never beat at all (``Orphans``), or at once when its process
on this machine has ended (``hpo.liveness``, ``fail_lost``). A trial stopped by Ctrl-C or SIGTERM
is re-queued by its own process. A re-run keeps its first attempt's ``origin`` (and so its seed);
at most ``MAX_RETRY`` re-runs of a trial lost to a kill or a crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.sampling import origin_of

MAX_RETRY = 3
# How the reason of a trial stopped by Ctrl-C or SIGTERM starts: the user stopped it, the trial
# did not fail, so such an attempt does not count against MAX_RETRY.
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Queue a lost or interrupted trial's parameters again, keeping its baseline mark and its
    ``origin`` (so the re-run trains with the same seed); nothing once ``MAX_RETRY`` re-runs of it
    exist, not counting attempts stopped by Ctrl-C or SIGTERM (else interrupting the baseline
    four times would lose it for good); says whether it queued them. Used instead of Optuna's
    RetryHeartbeatStaleTrialCallback, which rebuilds the trial with ``create_trial``: that rejects
    a value outside its range, as the baseline's may be."""
    origin = origin_of(trial)
    trials = study.get_trials(deepcopy=False)
    live = (TrialState.WAITING, TrialState.RUNNING)
    if any(
        t.number != trial.number and t.state in live and t.user_attrs.get("origin") == origin
        for t in trials
    ):
        return True  # queued once already (an interrupted attempt whose FAIL was cut short)
    attempts = sum(
        t.user_attrs.get("origin") == origin
        and not str(t.user_attrs.get("reason", "")).startswith(INTERRUPTED)
        for t in trials
    )
    if attempts > MAX_RETRY:
        return False
    queue_again(study, trial)
    return True


def queue_again(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s parameters once more, with its baseline mark and its ``origin`` (the
    re-run trains with the same seed); no retry limit: ``requeue`` keeps that."""
    origin = origin_of(trial)
    # The values it was queued with count too: a trial lost before it asked for them has none.
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    keep = {"is_baseline": bool(trial.user_attrs.get("is_baseline", False)), "origin": origin}
    study.enqueue_trial(params, user_attrs=keep)


def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    requeue(study, trial)  # Optuna's callback returns nothing; the search loop tells the user


def superseded(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the attempts a later attempt at the same parameters has replaced (an
    interrupted or lost trial, failed): a run straight through has no such trial."""
    origins = {t.number: origin_of(t) for t in trials}
    latest: dict[int, int] = {}
    for number, origin in origins.items():
        latest[origin] = max(latest.get(origin, number), number)
    return {number for number, origin in origins.items() if latest[origin] != number}


def not_requeued(trials: Iterable[FrozenTrial], numbers: Iterable[int]) -> list[int]:
    """Of the failed trials ``numbers``, those with no later attempt at their parameters: the
    re-runs ``requeue`` gave up on."""
    replaced = superseded(trials)
    return [n for n in numbers if n not in replaced]


class Orphans:
    """Running trials that never recorded a heartbeat, failed and queued again once this process
    has seen them so for ``grace`` seconds.

    A worker killed between asking for a trial and its first heartbeat (a few milliseconds)
    leaves such a trial. Optuna's stale-trial check passes over trials without a heartbeat, so
    nothing else would end it, and a study waiting for its running trials would wait forever.
    Seconds are counted on this process's clock, not the trial's start time: the machines
    sharing a study need not agree on the time.
    """

    _UNBEATEN = sqlalchemy.text(
        "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
        " WHERE t.study_id = :study AND t.state = 'RUNNING' AND h.trial_id IS NULL"
    )

    def __init__(self, study: optuna.Study, storage: RDBStorage, grace: float) -> None:
        self._study, self._storage, self._grace = study, storage, grace
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._first_seen: dict[int, float] = {}

    def sweep(self) -> list[int]:
        """Fail and re-queue the orphans past their grace; returns their trial numbers."""
        now = time.monotonic()
        with self._storage.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(self._UNBEATEN, {"study": self._study_id})]
        self._first_seen = {i: self._first_seen.get(i, now) for i in ids}
        past = [i for i, seen in self._first_seen.items() if now - seen >= self._grace]
        return [n for i in past if (n := fail_lost(self._study, i)) is not None]


def fail_lost(study: optuna.Study, trial_id: int) -> int | None:
    """Fail a running trial found lost and queue its parameters again (``requeue``); its
    number, or None where it finished meanwhile (its worker was alive after all)."""
    storage = study._storage  # the RDB storage; Optuna keeps no public handle to it
    try:
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    trial = storage.get_trial(trial_id)
    requeue(study, trial)
    return trial.number
