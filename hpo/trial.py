"""One trial: its config from the trial's parameters, trained with ``fit``, reported every epoch
(so the pruner can stop it), with every user attribute the report and the dashboard read."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from hpo.config import TrainConfig
from hpo.cuda_graph import use_graph
from hpo.device import describe, resolve_precision
from hpo.errors import causes
from hpo.interrupts import signals_held
from hpo.jsonable import finite
from hpo.lost_trials import INTERRUPTED, requeue
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.progress import Progress
from hpo.provenance import library_versions
from hpo.sampling import draw_index, training_seed
from hpo.space import baseline_config, config_from_params, suggest, suggest_baseline
from hpo.spec import StudySpec
from hpo.step_compile import use_compile
from hpo.storage_url import RUNS_DIR
from hpo.tb import TrialWriter, trial_dir
from hpo.train import EpochMetrics, StepKind, fit

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


class TrialFailed(Exception):
    """A failure of the trial's configuration, not of the run: the trial is recorded FAIL with
    the reason and the study goes on (a run of failures in a row stops it: hpo.search)."""


class Diverged(TrialFailed):
    """The training loss went NaN or inf."""


class OutOfMemory(TrialFailed):
    """The configuration does not fit the device's memory (wide layers, several workers on one
    GPU): other configurations may."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised from, an allocator's refusal: CUDA's
    (torch.OutOfMemoryError, MPS's too) or the CPU allocator's, a plain RuntimeError (a
    compiler may wrap either in its own error)."""
    return any(
        isinstance(e, torch.OutOfMemoryError)
        or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))
        for e in causes(exc)
    )


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one process shares; Mnist and Progress are the mutable parts."""

    spec: StudySpec
    study_name: str
    mnist: Mnist
    device: torch.device
    progress: Progress
    runs_dir: Path | None = RUNS_DIR  # TensorBoard events go under it; None: none
    compile: bool | None = None


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
        # A re-run trains with its first attempt's seed; both count draws, not trial numbers.
        seed = training_seed(spec.seed, draw_index(trial.study.get_trials(deepcopy=False), origin))
        config = _config_of(trial, ctx, seed, is_baseline=is_baseline)
        for key, value in _first_record(ctx, config, is_baseline, origin).items():
            trial.set_user_attr(key, value)
        if ctx.runs_dir is not None:
            writer = TrialWriter(trial_dir(ctx.runs_dir, ctx.study_name, number))
        ctx.progress.trial_started(number, config.epochs)
        total = config.epochs

        def on_epoch(m: EpochMetrics) -> None:
            history.append(m)
            if writer is not None:
                writer.epoch(m)
            _store_curves(trial, history, began)
            trial.report(objective_of(spec, m), m.epoch)
            ctx.progress.epoch(number, m.epoch)
            # Not after the last epoch: stopping there saves nothing, and would throw away a
            # finished result (the pruner may rank it low: a median of longer runs, say).
            # Never the baseline: pruned, it is finished and never runs again, and the study has
            # nothing to compare its winners with (with --jobs it can meet other trials' rungs
            # first). It is still asked, so Hyperband's rungs record its values as anyone's.
            if m.epoch + 1 < total and trial.should_prune() and not is_baseline:
                raise optuna.TrialPruned(f"pruned at epoch {m.epoch + 1} of {total}")

        def on_prepared(kind: StepKind) -> None:
            # Here, not from the result: a pruned trial never gets one.
            trial.set_user_attr("compiled", kind.compiled)
            trial.set_user_attr("aot", kind.aot)
            trial.set_user_attr("cuda_graph", kind.graphed)

        result = fit(
            config, ctx.mnist, ctx.device, on_epoch, compile=ctx.compile, on_prepared=on_prepared
        )
        if result.status == "diverged" and writer is not None:
            writer.epoch(result.final)  # TensorBoard shows where it blew up, as the curves do
        history[:] = result.epochs  # the diverged epoch too, which on_epoch never saw
        _store_curves(trial, history, began)
        if result.status == "diverged":
            last = result.final
            loss, value = (
                ("train loss", last.train_loss)
                if not math.isfinite(last.train_loss)
                else ("validation loss", last.eval_loss)
            )
            reason = f"diverged: {loss} {value} at epoch {last.epoch + 1} of {total}"
            trial.set_user_attr("reason", reason)
            raise Diverged(reason)
        trial.set_user_attr("reason", "")
        state = "complete"
        return objective_of(spec, result.final)
    except optuna.TrialPruned as exc:
        state = "pruned"
        trial.set_user_attr("reason", str(exc))
        raise
    except (TrialFailed, optuna.exceptions.UpdateFinishedTrialError):
        # The latter: a worker took this trial for lost (its heartbeat late: a stalled or
        # suspended machine), failed it and queued it again. Its re-run counts; run_one goes on.
        raise
    except Exception as exc:
        if out_of_memory(exc):
            reason = f"out of memory on {ctx.device}: {' '.join(str(exc).split())}"[:500]
            trial.set_user_attr("reason", reason)
            # Not chained: the error's frames hold the trial's tensors, which the next trial
            # (or another worker on the GPU) needs back (hpo.search empties CUDA's cache).
            raise OutOfMemory(reason) from None
        trial.set_user_attr("reason", f"error: {type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        try:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # see above
                trial.set_user_attr("wall_seconds", time.perf_counter() - began)
        finally:  # the events file is complete even when the storage went away
            if writer is not None and config is not None:
                writer.close(config, number=number, is_baseline=is_baseline, state=state)


def queue_interrupted(trial: optuna.Trial) -> None:
    """A trial stopped by Ctrl-C or SIGTERM, anywhere between its ask and its tell: queue its
    parameters again (the caller then marks it FAIL) so that rerunning finishes the job. A
    second Ctrl-C a moment after the first must not stop this half-way: the reason would say
    "queued again" with nothing queued."""
    with signals_held():
        frozen = trial.storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:  # else told already, or taken for lost by a worker
            # The reason first: requeue counts the attempts not stopped by an interrupt.
            trial.set_user_attr("reason", f"{INTERRUPTED}; its parameters were queued again")
            if not requeue(trial.study, frozen):  # its earlier attempts were lost too often
                trial.set_user_attr("reason", f"{INTERRUPTED}; not queued again")


def _config_of(
    trial: optuna.Trial, ctx: TrialContext, seed: int, *, is_baseline: bool
) -> TrainConfig:
    """The trial's parameters, asked of the sampler (the baseline's through the same
    distributions, so the sampler learns from it), as the config it trains."""
    spec = ctx.spec
    precision = resolve_precision(spec.precision, ctx.device)
    if is_baseline:
        suggest_baseline(trial, spec.space)
        return baseline_config(epochs=spec.epochs, seed=seed, precision=precision)
    return config_from_params(
        spec.space, suggest(trial, spec.space), epochs=spec.epochs, seed=seed, precision=precision
    )


def _first_record(
    ctx: TrialContext, config: TrainConfig, is_baseline: bool, origin: int
) -> dict[str, Any]:
    """Every user attribute but ``process`` (run_one's, before the first heartbeat), set
    before the first epoch: a trial killed at any point has them all (``reason`` says it never
    finished until it does)."""
    return {
        "config": config.to_dict(),
        "seed": config.seed,
        # The study's attrs name the sampler and pruner it was made with; a resumed run may
        # change them, so each trial names its own (the report lists them per trial range).
        "sampler": ctx.spec.sampler.to_dict(),
        "pruner": ctx.spec.pruner.to_dict(),
        "is_baseline": is_baseline,
        "origin": origin,
        "curves": curves_of(()),
        "epochs_run": 0,
        "device": str(ctx.device),
        "device_name": describe(ctx.device),
        "versions": library_versions(),
        # compiled, aot, cuda_graph: a first guess; fit says what it does (on_prepared).
        "compiled": use_compile(ctx.device, ctx.compile),
        # Eager by choice, not by a failed compile: a later run compiling is told they differ.
        "no_compile": ctx.compile is False,
        "aot": False,
        "cuda_graph": use_graph(ctx.device, None),
        "param_count": parameter_count(config.hidden1, config.hidden2),
        "reason": UNFINISHED,
        "wall_seconds": 0.0,
    }


def objective_of(spec: StudySpec, m: EpochMetrics) -> float:
    return m.eval_acc if spec.objective == "val_acc" else m.eval_loss


def curves_of(history: tuple[EpochMetrics, ...] | list[EpochMetrics]) -> dict[str, list[Any]]:
    """Per-epoch lists under the report's names; a non-finite value (a diverged epoch) is stored
    as null, because JSON has no NaN and the dashboard's parser rejects it."""
    fields = {"val_loss": "eval_loss", "val_acc": "eval_acc"}
    return {key: [finite(getattr(m, fields.get(key, key))) for m in history] for key in CURVE_KEYS}


def _store_curves(trial: optuna.Trial, history: list[EpochMetrics], began: float) -> None:
    # Every epoch, so the dashboard shows a live curve and a killed trial keeps its part.
    trial.set_user_attr("curves", curves_of(history))
    trial.set_user_attr("epochs_run", len(history))
    trial.set_user_attr("wall_seconds", time.perf_counter() - began)
