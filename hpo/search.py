"""The study driver: create or resume a study, run trials until N have finished, summarize.

One pass of the loop asks for a trial, trains it with ``run_trial(trial, ctx)`` under a heartbeat
and tells the outcome. Any number of such loops, in processes on one machine or many, may share one
study (Optuna's distributed mode): each fails the stale trials it finds, and a trial only trains
while the study still needs it, so the finished trials come out at exactly the target.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

import hpo
from hpo.algorithms import make_pruner, make_sampler
from hpo.errors import HpoError
from hpo.mnist import Mnist
from hpo.progress import Counts, Progress
from hpo.records import TARGET_ATTR, baseline_of, last_val_acc
from hpo.space import baseline_outside_space, baseline_params
from hpo.spec import Choice, Fixed, StudySpec
from hpo.storage import (
    GRACE_FACTOR,
    INTERRUPTED,
    MAX_RETRY,
    Heartbeat,
    Orphans,
    not_requeued,
    reporting_loss,
)
from hpo.storage_url import mask_url
from hpo.trial import UNFINISHED, Diverged, TrialContext, run_trial

MAX_FAILS_IN_A_ROW = 10
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE = (TrialState.RUNNING, TrialState.WAITING)
# How often a worker with no free place looks again: the place may open (a trial failed) or the
# study may be done, and the parent of --jobs workers waits for the last of them to notice. A
# few small queries a poll, and only while the study's last trials run elsewhere.
WAIT_POLL_S = 0.25
# How long open_study waits for another process to finish creating the study (milliseconds
# of writes) before taking it for dead and finishing the job itself.
CREATION_WAIT_S = 10.0


class StudyMismatchError(HpoError):
    """The study exists with another search space, budget or seed; it is left untouched."""


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
    final: dict[str, Any] | None
    stopped_early: str = ""  # why the run ended before the target ("timeout"), else ""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------- creating and resuming


def check_study(spec: StudySpec, storage: RDBStorage, study_name: str) -> bool:
    """Whether the study exists; raises StudyMismatchError (writing nothing) if it exists with
    another search space, epochs, seed, precision or objective."""
    if study_name not in optuna.get_all_study_names(storage):
        return False
    summary = next(s for s in optuna.get_all_study_summaries(storage) if s.study_name == study_name)
    attrs, where = summary.user_attrs, f"study {study_name!r} in {mask_url(storage.url)}"
    fix = "use another --study name for this spec, or rerun with the study's own spec"
    if "spec_hash" not in attrs:
        if len(summary.directions) > 1:  # another tool's: hpo's studies have one objective
            raise StudyMismatchError(
                f"{where} has {len(summary.directions)} objectives, and hpo's studies one; {fix}"
            )
        if not _half_made(storage, study_name):
            raise StudyMismatchError(f"{where} was not created by hpo (no spec_hash); {fix}")
        if summary.direction.name.lower() != spec.direction:  # the one setting it has already
            raise StudyMismatchError(
                f"{where} has no hpo setup yet (another hpo run is creating it, or another "
                f"tool made it) and is set to {summary.direction.name.lower()} its objective; "
                f"this spec's is to {spec.direction}; {fix}"
            )
        return True  # being created by another process, or left so by one that died
    stored = attrs.get("spec", {})
    problems = []
    if attrs["spec_hash"] != spec.space.digest():
        old, new = stored.get("space", {}), spec.space.to_dict()
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        problems.append(f"search space differs in: {', '.join(changed) or '(format)'}")
    # Each key's value in a study made before hpo stored it: precisions came later, as fp32.
    older: dict[str, Any] = {"epochs": None, "seed": None, "objective": None, "precision": "fp32"}
    for key, before in older.items():
        had = stored.get(key, before)
        if had != getattr(spec, key):
            flag = f" (--{key} {had} matches it)" if key != "objective" and had is not None else ""
            problems.append(f"{key} is {getattr(spec, key)!r}, the study has {had!r}{flag}")
    if problems:
        raise StudyMismatchError(
            f"{where} exists with another setup: {'; '.join(problems)}. Nothing was changed; {fix}."
        )
    return True


def _half_made(storage: RDBStorage, study_name: str) -> bool:
    """A study that ``open_study`` has not finished creating: no trial, or only its baseline,
    queued."""
    trials = storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False)
    return all(t.state == TrialState.WAITING and t.user_attrs.get("is_baseline") for t in trials)


def open_study(spec: StudySpec, storage: RDBStorage, study_name: str) -> optuna.Study:
    """Resume the study, or create it with the baseline queued as trial 0 and its attrs.

    Creation writes ``spec_hash`` last, so a study that has it is whole. One without it is being
    created by another process (a worker on another machine that started at the same moment),
    which this one waits for; or its creator died half-way, and this one finishes the job."""
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    if not check_study(spec, storage, study_name):
        try:
            study = optuna.create_study(
                study_name=study_name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=spec.direction,
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: wait for it below
        else:
            _initialise(study, spec)
            return study
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    deadline = time.monotonic() + CREATION_WAIT_S
    while "spec_hash" not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)
    if "spec_hash" in study.user_attrs:
        check_study(spec, storage, study_name)  # the creator's spec may differ from this one
    else:
        _initialise(study, spec)  # its creator died before the end
    return study


def _initialise(study: optuna.Study, spec: StudySpec) -> None:
    # The baseline first, so that it is trial 0 whoever asks first; skip_if_exists: a creator
    # that died after queuing it left one.
    study.enqueue_trial(
        baseline_params(spec.space), user_attrs={"is_baseline": True}, skip_if_exists=True
    )
    attrs = {
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "epochs": spec.epochs,
        "precision": spec.precision,
        "objective": spec.objective,
        "hpo_version": hpo.__version__,
        "spec_hash": spec.space.digest(),  # last: the mark of a whole study
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def restore_baseline(storage: RDBStorage, study_name: str, target: int) -> tuple[str | None, int]:
    """Queue the baseline once more where every attempt at it was lost (its runs killed more
    often than ``requeue`` retries): every study carries its baseline, and a user rerunning
    ``hpo run`` asks for the study to be finished. One that failed by itself (diverged, an
    error) would fail again: it is left, and said. Returns a note for the user (or None) and
    the run's target: one more than the finished trials where the study had reached it, so
    that the queued baseline runs rather than waits."""
    if study_name not in optuna.get_all_study_names(storage):
        return None, target
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    attempts = [t for t in trials if t.user_attrs.get("is_baseline")]
    if not attempts or any(t.state != TrialState.FAIL for t in attempts):
        return None, target
    last = attempts[-1]
    # No reason at all: lost before run_trial recorded one (an orphan: Orphans.sweep).
    reasons = [str(t.user_attrs.get("reason") or UNFINISHED) for t in attempts]
    if not all(r.startswith((UNFINISHED, INTERRUPTED)) for r in reasons):
        said = next(r for r in reversed(reasons) if not r.startswith((UNFINISHED, INTERRUPTED)))
        note = (
            f"the baseline failed ({said}): the study has no baseline to compare its winners with"
        )
        return note, target
    params = {**last.system_attrs.get("fixed_params", {}), **last.params}
    origin = int(last.user_attrs.get("origin", last.number))
    study.enqueue_trial(params, user_attrs={"is_baseline": True, "origin": origin})
    note = (
        f"the baseline's {len(attempts)} attempts were all lost (their runs killed); it is "
        "queued again, to run first"
    )
    finished = sum(t.state in FINISHED for t in trials)
    if finished >= target:
        target = finished + 1
        note += f"; the target goes to {target} trials so that it runs"
    return note, target


def setup_notes(spec: StudySpec) -> list[str]:
    outside = baseline_outside_space(spec.space)
    notes = [f"baseline (trial 0) runs the tutorial's {note}" for note in outside]
    head = dict(spec.space.dims).get("head")  # absent: the tutorial's softmax for every trial
    heads = (
        set(head.choices) if isinstance(head, Choice)
        else {head.value} if isinstance(head, Fixed)
        else {"softmax"}
    )  # fmt: skip
    if spec.objective == "val_loss" and heads != {"softmax"}:
        # The tutorial's double softmax bounds its loss below by about 1.46: not the logits
        # head's scale, so the baseline ranks last by loss whatever its accuracy.
        notes.append(
            "objective val_loss: the softmax head's loss (the baseline's, the tutorial's double "
            "softmax; never below about 1.46) is on another scale than the logits head's, so "
            "trials of the two heads do not compare by loss; val_acc compares them"
        )
    never = _never_prunes(spec)
    return [*notes, never] if never else notes


def _never_prunes(spec: StudySpec) -> str | None:
    """A note when the pruner's first check comes after the last epoch that can be pruned
    (steps are epochs counted from 0; the last epoch is never pruned, see hpo.trial)."""
    p = spec.pruner
    if p.name == "median":
        first, knob = p.option("n_warmup_steps"), "n_warmup_steps"
    elif p.name == "hyperband":
        first, knob = p.option("min_resource"), "min_resource"
    elif p.name == "successive_halving":
        rate = p.option("min_early_stopping_rate")
        first = p.option("min_resource") * p.option("reduction_factor") ** rate
        knob = "min_resource or min_early_stopping_rate"
    else:
        return None
    last = spec.epochs - 2
    if first <= last:
        return None
    if last < 0:
        return f"pruner {p.name}: no trial can be pruned in 1 epoch (a last epoch never is)"
    return (
        f"pruner {p.name}: no trial can be pruned: its first check is at step {first} (epochs "
        f"count from 0) and with {spec.epochs} epochs the last step that can be pruned is "
        f'{last}; lower {knob}, or name = "none" to say so'
    )


# ---------------------------------------------------------------------- the loop


def counts(study: optuna.Study, target: int) -> Counts:
    return counts_of(study.get_trials(deepcopy=False), target, study.direction)


def counts_of(
    trials: list[FrozenTrial], target: int, direction: optuna.study.StudyDirection
) -> Counts:
    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    best = _best(trials, direction)
    return Counts(
        target,
        n[TrialState.COMPLETE],
        n[TrialState.PRUNED],
        n[TrialState.FAIL],
        n[TrialState.RUNNING],
        best.value if best else None,
        best.number if best else None,
    )


def best_trial(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> FrozenTrial | None:
    return _best(study.get_trials(deepcopy=False) if trials is None else trials, study.direction)


def _best(trials: list[FrozenTrial], direction: optuna.study.StudyDirection) -> FrozenTrial | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    sign = 1 if direction == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * (t.value or 0.0), -t.number))


def baseline_trial(
    study: optuna.Study, trials: list[FrozenTrial] | None = None
) -> FrozenTrial | None:
    """``study``'s baseline (``hpo.records.baseline_of``), from ``trials`` when already read."""
    return baseline_of(study.get_trials(deepcopy=False) if trials is None else trials)


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
    runs_dir: Path | None = Path("runs"),
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
    interval = storage.get_heartbeat_interval() or 1
    deadline = None if timeout is None else time.monotonic() + timeout
    fails, waited_on = 0, None
    # Without heartbeats (a storage opened without them) no trial can be told apart as lost.
    beats = storage.get_heartbeat_interval() is not None
    grace = GRACE_FACTOR * interval  # silent this long, a running trial counts as lost
    orphans = Orphans(study, storage, grace) if beats else None
    progress.start(counts(study, n_trials))
    try:
        while True:
            before = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            if lost := _lost(before, trials):
                progress.lost(lost, not_requeued(trials, lost), grace, MAX_RETRY)
            now = counts_of(trials, n_trials, study.direction)
            if now.finished >= n_trials:
                return ""
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            if now.finished + now.running >= n_trials:
                running = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
                if running != waited_on:  # say it once, not every poll
                    progress.waiting(running, grace, now)
                    waited_on = running
                if orphans is not None and (ended := orphans.sweep()):  # queued again
                    dropped = not_requeued(study.get_trials(deepcopy=False), ended)
                    progress.lost(ended, dropped, grace, MAX_RETRY)
                    continue
                time.sleep(min(interval, WAIT_POLL_S))
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
                    "(a learning rate too high diverges) and rerun to continue the study."
                )
    finally:
        progress.close()


def _lost(before: list[FrozenTrial], trials: list[FrozenTrial]) -> list[int]:
    """The trials running in ``before`` that the stale check has since failed: their reason is
    still the one a trial carries until it ends (its process was killed)."""
    now = {t.number: t for t in trials}
    return [
        t.number
        for t in before
        if now[t.number].state == TrialState.FAIL
        and now[t.number].user_attrs.get("reason") == UNFINISHED
    ]


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
        with Heartbeat(storage, trial._trial_id):
            try:
                value = run_trial(trial, ctx)
            except optuna.TrialPruned:
                return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            except Diverged:
                return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:  # taken for lost: see run_trial
                return storage.get_trial(trial._trial_id)
            except BaseException:
                with contextlib.suppress(Exception):  # the storage may be what failed
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
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
    finished = [t for t in trials if t.state in FINISHED]
    best, base = best_trial(study, trials), baseline_trial(study, trials)
    return StudySummary(
        study.study_name,
        mask_url(storage.url),
        target,
        c.complete,
        c.pruned,
        c.failed,
        c.running,
        epochs,
        sum(int(t.user_attrs.get("epochs_run", 0)) for t in finished),
        len(finished) * epochs,
        _brief(best),
        _brief(base),
        study.user_attrs.get("final"),
        stopped,
    )


def _brief(t: FrozenTrial | None) -> TrialBrief | None:
    if t is None or t.value is None:
        return None
    config = dict(t.user_attrs["config"])
    return TrialBrief(t.number, t.value, last_val_acc(t), dict(t.params), config)
