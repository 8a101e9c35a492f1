"""The study driver: run trials until N have finished, summarize (``hpo.study_setup`` creates
or resumes the study; ``hpo.study_summary`` counts and sums it up).

One pass of the loop asks for a trial, trains it with ``run_trial(trial, ctx)`` under a heartbeat
and tells the outcome. Any number of such loops, in processes on one machine or many, may share one
study (Optuna's distributed mode): each fails the lost trials it finds (``hpo.sweeper``), and a
trial only trains while the study still needs it, so the finished trials come out at exactly the
target.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

import optuna
import torch
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo import interrupts
from hpo.errors import HpoError
from hpo.liveness import this_process
from hpo.mnist import Mnist
from hpo.progress import Progress
from hpo.records import FINISHED, TARGET_ATTR
from hpo.spec import StudySpec
from hpo.storage import Heartbeat, reporting_loss
from hpo.storage_url import RUNS_DIR
from hpo.study_setup import open_study
from hpo.study_summary import StudySummary, counts, counts_of, outcome, summarize
from hpo.sweeper import Sweeper
from hpo.trial import OutOfMemory, TrialContext, TrialFailed, queue_interrupted, run_trial

MAX_FAILS_IN_A_ROW = 10
LIVE = (TrialState.RUNNING, TrialState.WAITING)


def run_study(
    spec: StudySpec,
    storage: RDBStorage,
    study_name: str,
    n_trials: int,
    device: torch.device,
    mnist: Mnist,
    progress: Progress,
    *,
    timeout: float | None = None,
    runs_dir: Path | None = RUNS_DIR,
    compile: bool | None = None,
) -> StudySummary:
    """Run trials until ``n_trials`` have finished (complete or pruned) in the study in total,
    so running the same command again after an interruption finishes the job; other processes
    may run the same loop on the same study at the same time.

    A database that goes away mid-study raises one StorageLostError naming it (masked)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1 (got {n_trials})")
    with reporting_loss(storage.url):
        study = open_study(spec, storage, study_name)
        if counts(study, n_trials).finished <= n_trials:  # for hpo finalize and the report;
            study.set_user_attr(TARGET_ATTR, n_trials)  # not a run that had nothing to do
        ctx = TrialContext(spec, study_name, mnist, device, progress, runs_dir, compile)
        stopped = _loop(study, storage, ctx, n_trials, timeout)
        return summarize(study, storage, n_trials, stopped)


def _loop(
    study: optuna.Study,
    storage: RDBStorage,
    ctx: TrialContext,
    n_trials: int,
    timeout: float | None,
) -> str:
    """The trials of this process; returns why it stopped before the target ("timeout") or ""."""
    progress = ctx.progress
    deadline = None if timeout is None else time.monotonic() + timeout
    fails = 0
    sweeper = Sweeper(study, storage, progress)
    progress.start(counts(study, n_trials))
    try:
        while True:
            interrupts.raise_pending()  # a stop whose raise Python dropped (hpo.interrupts)
            now = counts_of(sweeper.sweep(), n_trials, study.direction)
            if now.finished >= n_trials:
                return ""
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            if now.finished + now.running >= n_trials:  # every place left is taken
                sweeper.wait(now)
                continue
            t = run_one(study, storage, ctx, n_trials)
            if t is None:  # another worker took the last free place first
                continue
            fails = fails + 1 if t.state == TrialState.FAIL else 0
            progress.trial_finished(t.number, outcome(t), counts(study, n_trials))
            if fails >= MAX_FAILS_IN_A_ROW:
                raise HpoError(
                    f"{fails} trials in a row failed (last: trial {t.number}, "
                    f"{t.user_attrs.get('reason')}); stopping. Check the search space "
                    "(a learning rate too high diverges, layers too wide run out of memory) "
                    "and rerun to continue the study."
                )
    finally:
        progress.close()


def run_one(
    study: optuna.Study, storage: RDBStorage, ctx: TrialContext, target: int
) -> FrozenTrial | None:
    """Ask for a trial, train it under a heartbeat, tell its outcome; None when the study no
    longer needs it (the trial goes back to the queue untrained).

    Ask, train, tell by hand rather than ``study.optimize``: the place check must sit between
    the ask and the training, and Optuna's heartbeat thread dies with a traceback on a failed
    write, one per worker when the database goes away."""
    with warnings.catch_warnings():
        # The baseline's enqueued values may lie outside the space; setup_notes says so.
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        trial = study.ask()
        try:
            needed = not surplus(study, trial.number, target)
        except BaseException:
            _return_to_queue(storage, trial)
            raise
        if not needed:
            _return_to_queue(storage, trial)
            return None
        try:
            # Who runs it, first: killed from here on, a run on this machine sees it lost at
            # once (hpo.liveness) rather than after the heartbeat's grace.
            trial.set_user_attr("process", this_process())
            with Heartbeat(storage, trial._trial_id):
                return _train_and_tell(study, storage, trial, ctx)
        except BaseException as exc:
            # A stop anywhere up to the tell's commit (the first heartbeat, training,
            # run_trial's last writes, the tell itself) queues the trial's parameters again.
            try:
                if isinstance(exc, KeyboardInterrupt):
                    queue_interrupted(trial)
            finally:
                with contextlib.suppress(Exception):  # the storage may be what failed
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise


def _train_and_tell(
    study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, ctx: TrialContext
) -> FrozenTrial:
    try:
        value = run_trial(trial, ctx)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except OutOfMemory:  # its reason is stored; what it held is freed by now
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()  # for the next trial, and other workers on the GPU
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except TrialFailed:  # diverged: its reason is stored
        return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # taken for lost: see run_trial
        return storage.get_trial(trial._trial_id)
    # skip_if_finished: a worker that took this trial for lost (its heartbeat late) has
    # failed and re-queued it already; its re-run counts, this result does not.
    return study.tell(trial, value, skip_if_finished=True)


def surplus(study: optuna.Study, number: int, target: int) -> bool:
    """Whether trial ``number``, just asked, would take the study past ``target`` finished trials.

    The finished trials and the queued or running ones numbered below it have the places first.
    Trial numbers are handed out one at a time by the storage, so of any two trials that train,
    the later-numbered one counted the earlier when it checked: the trials that train never
    outnumber the places, and the lowest-numbered waiting trial always gets one."""
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in FINISHED for t in trials)
    ahead = sum(t.state in LIVE and t.number < number for t in trials)
    return finished + ahead >= target


def _return_to_queue(storage: RDBStorage, trial: optuna.Trial) -> None:
    # Untrained and without a heartbeat: back to WAITING with whatever it was queued with.
    storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
