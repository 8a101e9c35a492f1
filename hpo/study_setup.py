"""A study made or resumed for a spec: checked against it (a study of another space, epochs,
seed, precision or objective is refused, writing nothing), created with its baseline queued as
trial 0 and the spec in its attributes, and the notes ``hpo run`` prints before the first trial.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

import hpo
from hpo.algorithms import cma_es_falls_back, make_sampler
from hpo.errors import HpoError
from hpo.lost_trials import INTERRUPTED, queue_again
from hpo.pruners import make_pruner
from hpo.records import FINISHED
from hpo.space import baseline_outside_space, baseline_params
from hpo.spec import Choice, Fixed, StudySpec
from hpo.storage import GRACE_FACTOR, set_heartbeat
from hpo.storage_url import mask_url
from hpo.trial import UNFINISHED

UID = "uid"  # a study user attribute: study_uid
# A study user attribute: the seconds between its trials' heartbeats, set by its first run.
# Each process takes a trial silent for GRACE_FACTOR times its own interval as lost, so one
# beating slower than another's would have its live trials failed by it.
HEARTBEAT_ATTR = "heartbeat"
# How long open_study waits for another process to finish creating the study (milliseconds
# of writes) before taking it for dead and finishing the job itself.
CREATION_WAIT_S = 10.0


class StudyMismatchError(HpoError):
    """The study exists with another search space, budget or seed; it is left untouched."""


def check_study(
    spec: StudySpec, storage: RDBStorage, study_name: str, *, adopt_heartbeat: bool = False
) -> bool:
    """Whether the study exists; raises StudyMismatchError (writing nothing) if it exists with
    another search space, epochs, seed, precision or objective, or another heartbeat than the
    storage's. With ``adopt_heartbeat`` (no --heartbeat given) the storage takes the study's
    instead: another process may have made the study, with its own, after this one read none."""
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
    had, asked = attrs.get(HEARTBEAT_ATTR), storage.get_heartbeat_interval()
    if had is not None and asked is not None and had != asked:
        if adopt_heartbeat:
            set_heartbeat(storage, int(had))
            return True
        raise StudyMismatchError(
            f"{where}: its trials beat every {had} s (set by its first run) and this run's every "
            f"{asked} s, so one process would fail the other's live trials as lost after "
            f"{GRACE_FACTOR * asked} s. Nothing was changed; leave --heartbeat out (a run takes "
            f"the study's) or pass --heartbeat {had}."
        )
    return True


def _half_made(storage: RDBStorage, study_name: str) -> bool:
    """A study that ``open_study`` has not finished creating: no trial, or only its baseline,
    queued."""
    trials = storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False)
    return all(t.state == TrialState.WAITING and t.user_attrs.get("is_baseline") for t in trials)


def open_study(
    spec: StudySpec, storage: RDBStorage, study_name: str, *, adopt_heartbeat: bool = False
) -> optuna.Study:
    """Resume the study, or create it with the baseline queued as trial 0 and its attrs
    (``adopt_heartbeat``: see check_study).

    Creation writes ``spec_hash`` last, so a study that has it is whole. One without it is being
    created by another process (a worker on another machine that started at the same moment),
    which this one waits for; or its creator died half-way, and this one finishes the job."""
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    if not check_study(spec, storage, study_name, adopt_heartbeat=adopt_heartbeat):
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
            _initialise(study, spec, storage.get_heartbeat_interval())
            return study
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    deadline = time.monotonic() + CREATION_WAIT_S
    while "spec_hash" not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)
    if "spec_hash" in study.user_attrs:
        # The creator's spec may differ from this one, and its heartbeat from what was read.
        check_study(spec, storage, study_name, adopt_heartbeat=adopt_heartbeat)
        beat = storage.get_heartbeat_interval()
        if HEARTBEAT_ATTR not in study.user_attrs and beat:  # an hpo from before it was stored
            study.set_user_attr(HEARTBEAT_ATTR, beat)
    else:  # its creator died before the end
        _initialise(study, spec, storage.get_heartbeat_interval())
    return study


def _initialise(study: optuna.Study, spec: StudySpec, heartbeat: int | None) -> None:
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
        HEARTBEAT_ATTR: heartbeat,  # None: opened without heartbeats (a test's storage)
        UID: uuid.uuid4().hex,
        "spec_hash": spec.space.digest(),  # last: the mark of a whole study
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def study_uid(study: optuna.Study) -> str:
    """The study's own identity, across storages and their URLs' spellings (a study deleted and
    made again under its name is another); given to a study made before hpo recorded one."""
    uid = study.user_attrs.get(UID)
    if not isinstance(uid, str):
        uid = uuid.uuid4().hex
        study.set_user_attr(UID, uid)
    return uid


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
    # Two machines rerunning in the same instant may both queue it (storages have no
    # compare-and-set). Harmless: the lower-numbered copy takes the one place the target leaves
    # (search.surplus), the other waits untrained; a later, larger run trains it as a trial, and
    # the report's baseline stays the first complete one (records.baseline_of).
    queue_again(study, last)
    note = (
        f"the baseline's {len(attempts)} attempts were all lost (their runs killed); it is "
        "queued again"
    )
    # The places already spoken for: finished trials, and those running or queued before it.
    taken = sum(t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING) for t in trials)
    if taken >= target:
        target = taken + 1
        note += f"; the target goes to {target} trials so that it runs"
    return note, target


def resume_notes(
    storage: RDBStorage,
    study_name: str,
    *,
    auto: set[str] | None,
    eager: bool,
    compiles: bool = False,
) -> list[str]:
    """Notes when this run's trials will round otherwise than the study's so far, so that one
    ranking mixes both: ``auto``, the precisions "auto" resolves to here (None: the spec names
    one, as every run of the study must), against another machine's or device's; ``eager``
    (--no-compile) against compiled trials; ``compiles`` (this run compiles its steps) against
    trials trained with --no-compile."""
    trials = storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False)
    configs = [
        t.user_attrs["config"] for t in trials if isinstance(t.user_attrs.get("config"), dict)
    ]
    notes = []
    trained = [str(c.get("precision", "fp32")) for c in configs]
    if auto is not None and (other := sorted(set(trained) - auto)):
        count = sum(p in other for p in trained)
        notes.append(
            f"precision auto trains in {', '.join(sorted(auto))} here, and {count} of the "
            f"study's trials trained in {', '.join(other)} (another machine or device): its "
            "ranking mixes both, as the report's summary shows. For one precision throughout, "
            "run a study of its own with --precision fp32 or bf16"
        )
    if eager and (compiled := sum(t.user_attrs.get("compiled") is True for t in trials)):
        notes.append(
            f"--no-compile trains eagerly, and {compiled} of the study's trials trained compiled "
            "steps, which round otherwise: its ranking mixes both. Leave --no-compile out to "
            "go on as they did"
        )
    if compiles and (eager_ones := sum(t.user_attrs.get("no_compile") is True for t in trials)):
        notes.append(
            f"this run compiles its training steps, and {eager_ones} of the study's trials "
            "trained eagerly (--no-compile), which rounds otherwise: its ranking mixes both. "
            "Pass --no-compile to go on as they did"
        )
    return notes


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
    random = cma_es_falls_back(spec.space) if spec.sampler.name == "cmaes" else []
    if random:
        notes.append(
            f"sampler cmaes: {', '.join(random)} sampled independently at random, not by "
            "CMA-ES (it models only the numbers every trial has; these are categorical or used "
            "by only some schedules)"
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
