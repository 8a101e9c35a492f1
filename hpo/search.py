"""The study driver: create or resume a study, run trials until N have finished, finalize.

One pass of the loop asks for a trial, trains it with ``run_trial(trial, ctx)`` under a heartbeat
and tells the outcome. Any number of such loops, in processes on one machine or many, may share one
study (Optuna's distributed mode): each fails the stale trials it finds, and a trial only trains
while the study still needs it, so the finished trials come out at exactly the target.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
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
from hpo.config import TrainConfig
from hpo.device import describe
from hpo.errors import HpoError
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.progress import Counts, Progress
from hpo.provenance import library_versions
from hpo.sampling import TrialSeededSampler
from hpo.space import (
    baseline_config,
    baseline_outside_space,
    baseline_params,
    config_from_params,
    suggest,
    suggest_baseline,
)
from hpo.spec import Component, StudySpec
from hpo.storage import GRACE_FACTOR, Heartbeat, mask_url, reporting_loss, requeue
from hpo.tb import TrialWriter, trial_dir
from hpo.train import EpochMetrics, fit, use_compile

CURVE_KEYS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "train_seconds",
    "eval_seconds",
)
# What a trial that never reported back says: its worker was killed, crashed or lost power.
UNFINISHED = "unfinished: the worker stopped before the trial ended (killed or crashed)"
MAX_FAILS_IN_A_ROW = 10
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE = (TrialState.RUNNING, TrialState.WAITING)
# How often a worker with no free place looks again: the place may open (a trial failed) or the
# study may be done, and the parent of --jobs workers waits for the last of them to notice.
WAIT_POLL_S = 1.0


class Diverged(Exception):
    """The training loss went NaN or inf: the trial is recorded FAIL and the study goes on."""


class StudyMismatchError(HpoError):
    """The study exists with another search space, budget or seed; it is left untouched."""


def trial_seed(study_seed: int, number: int) -> int:
    # Hash-free and stable across Python versions and processes.
    return study_seed * 100_003 + number


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one process shares; Mnist and Progress are the mutable parts."""

    spec: StudySpec
    study_name: str
    mnist: Mnist
    device: torch.device
    progress: Progress
    runs_dir: Path | None = Path("runs")  # TensorBoard events go under it; None: none
    compile: bool | None = None


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


# ---------------------------------------------------------------------- samplers and pruners


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, reseeded per trial from (seed, trial number): see hpo.sampling."""
    return TrialSeededSampler(functools.partial(_build_sampler, spec.sampler), spec.seed)


def _build_sampler(s: Component, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.name == "tpe":
            multivariate = bool(s.option("multivariate"))
            # group=True: the conditional gamma/step_every get their own joint model.
            # constant_liar (Optuna's default, spelt out): a trial running in another worker
            # counts as a poor result, so parallel workers spread out instead of piling up.
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=s.option("n_startup_trials"),
                multivariate=multivariate,
                group=multivariate,
                constant_liar=True,
            )
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name == "qmc":
            return optuna.samplers.QMCSampler(qmc_type=s.option("qmc_type"), seed=seed)
        try:
            import cmaes  # noqa: F401 - Optuna imports it lazily, after the study started
        except ImportError:
            raise HpoError("sampler cmaes needs the cmaes package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=s.option("n_startup_trials")
        )


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.option("n_startup_trials"), n_warmup_steps=p.option("n_warmup_steps")
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.option("min_resource"),
            max_resource=spec.epochs,
            reduction_factor=p.option("reduction_factor"),
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.option("min_resource"),
            reduction_factor=p.option("reduction_factor"),
            min_early_stopping_rate=p.option("min_early_stopping_rate"),
        )
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------- creating and resuming


def check_study(spec: StudySpec, storage: RDBStorage, study_name: str) -> bool:
    """Whether the study exists; raises StudyMismatchError (writing nothing) if it exists with
    another search space, epochs, seed or objective."""
    if study_name not in optuna.get_all_study_names(storage):
        return False
    summary = next(s for s in optuna.get_all_study_summaries(storage) if s.study_name == study_name)
    attrs, where = summary.user_attrs, f"study {study_name!r} in {mask_url(storage.url)}"
    fix = "use another --study name for this spec, or rerun with the study's own spec"
    if "spec_hash" not in attrs:
        if summary.n_trials == 0:
            return True  # another worker created it a moment ago and is writing its attrs
        raise StudyMismatchError(f"{where} was not created by hpo (no spec_hash); {fix}")
    stored = attrs.get("spec", {})
    problems = []
    if attrs["spec_hash"] != spec.space.digest():
        old, new = stored.get("space", {}), spec.space.to_dict()
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        problems.append(f"search space differs in: {', '.join(changed) or '(format)'}")
    for key in ("epochs", "seed", "objective"):
        if stored.get(key) != getattr(spec, key):
            problems.append(f"{key} is {getattr(spec, key)!r}, the study has {stored.get(key)!r}")
    if problems:
        raise StudyMismatchError(
            f"{where} exists with another setup: {'; '.join(problems)}. Nothing was changed; {fix}."
        )
    return True


def open_study(spec: StudySpec, storage: RDBStorage, study_name: str) -> optuna.Study:
    """Resume the study or create it with its attrs and the baseline queued as trial 0."""
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    if check_study(spec, storage, study_name):
        study = optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        if "spec_hash" in study.user_attrs:
            return study
    else:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction="maximize" if spec.direction == "maximize" else "minimize",
            load_if_exists=True,
        )
    attrs = {
        "spec": spec.to_dict(),
        "spec_hash": spec.space.digest(),
        "seed": spec.seed,
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "epochs": spec.epochs,
        "objective": spec.objective,
        "hpo_version": hpo.__version__,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    # skip_if_exists: two workers creating the study at once queue one baseline, not two.
    study.enqueue_trial(
        baseline_params(spec.space), user_attrs={"is_baseline": True}, skip_if_exists=True
    )
    return study


def setup_notes(spec: StudySpec) -> list[str]:
    notes = baseline_outside_space(spec.space)
    return [f"baseline (trial 0) runs the tutorial's {note}" for note in notes]


# ---------------------------------------------------------------------- one trial


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> float:
    """Train one trial's config; report every epoch; store the user attrs the report reads."""
    began = time.perf_counter()
    spec, number = ctx.spec, trial.number
    attrs = trial.user_attrs
    is_baseline = bool(attrs.get("is_baseline", False))
    origin = int(attrs.get("origin", number))  # a re-run carries its first attempt's number
    config: TrainConfig | None = None
    writer: TrialWriter | None = None
    history: list[EpochMetrics] = []
    state = "fail"
    try:
        seed = trial_seed(spec.seed, origin)
        if is_baseline:
            suggest_baseline(trial, spec.space)
            config = baseline_config(epochs=spec.epochs, seed=seed)
        else:
            params = suggest(trial, spec.space)
            config = config_from_params(spec.space, params, epochs=spec.epochs, seed=seed)
        record = {
            "config": config.to_dict(),
            "seed": seed,
            "is_baseline": is_baseline,
            "origin": origin,
            "curves": curves_of(()),
            "epochs_run": 0,
            "device": str(ctx.device),
            "device_name": describe(ctx.device),
            "versions": library_versions(),
            "compiled": use_compile(ctx.device, ctx.compile),
            "param_count": parameter_count(config.hidden1, config.hidden2),
            "reason": UNFINISHED,
            "wall_seconds": 0.0,
        }
        for key, value in record.items():
            trial.set_user_attr(key, value)
        if ctx.runs_dir is not None:
            writer = TrialWriter(trial_dir(ctx.runs_dir, ctx.study_name, number))
        ctx.progress.trial_started(number, config.epochs, is_baseline=is_baseline)
        total = config.epochs

        def on_epoch(m: EpochMetrics) -> None:
            history.append(m)
            if writer is not None:
                writer.epoch(m)
            _store_curves(trial, history, began)
            trial.report(objective_of(spec, m), m.epoch)
            ctx.progress.epoch(number, m.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {m.epoch + 1} of {total}")

        result = fit(config, ctx.mnist, ctx.device, on_epoch, compile=ctx.compile)
        history[:] = result.epochs  # the diverged epoch too, which on_epoch never saw
        _store_curves(trial, history, began)
        trial.set_user_attr("compiled", result.compiled)
        if result.status == "diverged":
            last = result.final
            reason = f"diverged: train loss {last.train_loss} at epoch {last.epoch + 1} of {total}"
            trial.set_user_attr("reason", reason)
            raise Diverged(reason)
        trial.set_user_attr("reason", "")
        state = "complete"
        return objective_of(spec, result.final)
    except optuna.TrialPruned as exc:
        state = "pruned"
        trial.set_user_attr("reason", str(exc))
        raise
    except KeyboardInterrupt:
        # Optuna marks the trial FAIL; queue its parameters so that rerunning finishes the job.
        trial.set_user_attr("reason", "interrupted (Ctrl-C); its parameters were queued again")
        running = trial.study.get_trials(states=(TrialState.RUNNING,))
        requeue(trial.study, next(t for t in running if t.number == number))
        raise
    except Diverged:
        raise
    except Exception as exc:
        trial.set_user_attr("reason", f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        try:
            trial.set_user_attr("wall_seconds", time.perf_counter() - began)
        finally:  # the events file is complete even when the storage went away
            if writer is not None and config is not None:
                writer.close(config, number=number, is_baseline=is_baseline, state=state)


def objective_of(spec: StudySpec, m: EpochMetrics) -> float:
    return m.eval_acc if spec.objective == "val_acc" else m.eval_loss


def curves_of(history: tuple[EpochMetrics, ...] | list[EpochMetrics]) -> dict[str, list[Any]]:
    """Per-epoch lists under the report's names; a non-finite value (a diverged epoch) is stored
    as null, because JSON has no NaN and the dashboard's parser rejects it."""
    fields = {"val_loss": "eval_loss", "val_acc": "eval_acc"}
    return {key: [_finite(getattr(m, fields.get(key, key))) for m in history] for key in CURVE_KEYS}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _store_curves(trial: optuna.Trial, history: list[EpochMetrics], began: float) -> None:
    # Every epoch, so the dashboard shows a live curve and a killed trial keeps its part.
    trial.set_user_attr("curves", curves_of(history))
    trial.set_user_attr("epochs_run", len(history))
    trial.set_user_attr("wall_seconds", time.perf_counter() - began)


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
        n[TrialState.WAITING],
        best.value if best else None,
        best.number if best else None,
    )


def best_trial(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> FrozenTrial | None:
    return _best(trials or study.get_trials(deepcopy=False), study.direction)


def _best(trials: list[FrozenTrial], direction: optuna.study.StudyDirection) -> FrozenTrial | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    sign = 1 if direction == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(done, key=lambda t: (sign * (t.value or 0.0), -t.number))


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    return next(
        (
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("is_baseline")
        ),
        None,
    )


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
    progress.start(counts(study, n_trials))
    try:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            now = counts(study, n_trials)
            if now.finished >= n_trials:
                return ""
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            if now.finished + now.running >= n_trials:
                running = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
                if running != waited_on:  # say it once, not every poll
                    progress.waiting(running, GRACE_FACTOR * interval, now)
                    waited_on = running
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
    trials = study.get_trials(deepcopy=False)
    c = counts(study, target)
    epochs = int(study.user_attrs.get("epochs", 0))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    best, base = best_trial(study, trials), baseline_trial(study)
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
    val = t.user_attrs.get("curves", {}).get("val_acc") or [None]
    return TrialBrief(t.number, t.value, val[-1], dict(t.params), dict(t.user_attrs["config"]))


# ---------------------------------------------------------------------- finalize


def finalize(
    study: optuna.Study,
    mnist: Mnist,
    device: torch.device,
    *,
    force: bool = False,
    compile: bool | None = None,
    log: Any = lambda _m: None,
) -> dict[str, Any]:
    """Retrain the best and the baseline trial on all 60,000 training images for their epochs
    and evaluate each once on the test set; store and return the study's ``final`` attr.

    A stored result for the same two trials is returned as is unless ``force``."""
    best, base = best_trial(study), baseline_trial(study)
    if best is None:
        raise HpoError(
            f"study {study.study_name!r} has no complete trial to finalize yet; run `hpo run` first"
        )
    stored = study.user_attrs.get("final")
    if (
        not force
        and stored
        and stored.get("best", {}).get("trial") == best.number
        and (stored.get("baseline") or {}).get("trial") == (base.number if base else None)
    ):
        return dict(stored)
    done: dict[int, dict[str, Any]] = {}
    final: dict[str, Any] = {"best": None, "baseline": None}
    for role, t in (("best", best), ("baseline", base)):
        if t is None:
            continue
        if t.number not in done:
            log(f"finalize: retraining trial {t.number} ({role}) on the full training set")
            done[t.number] = _retrain(t, mnist, device, compile)
        final[role] = done[t.number]
    final["finalized_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    study.set_user_attr("final", final)
    return final


def _retrain(
    t: FrozenTrial, mnist: Mnist, device: torch.device, compile: bool | None
) -> dict[str, Any]:
    config = TrainConfig.from_dict(t.user_attrs["config"])
    result = fit(config, mnist, device, full=True, compile=compile)
    val = t.user_attrs.get("curves", {}).get("val_acc") or [None]
    return {
        "trial": t.number,
        "config": config.to_dict(),
        "val_acc": val[-1],
        "test_acc": _finite(result.final.eval_acc),
        "test_loss": _finite(result.final.eval_loss),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / len(result.epochs),
        "param_count": result.param_count,
        "device": result.device,
        "device_name": describe(device),
        "epochs": len(result.epochs),
        "status": result.status,
    }
