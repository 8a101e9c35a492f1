"""``hpo run`` end to end: plan the workers, open the storage, check and resume the study, run
its trials (this process's loop, or ``--jobs`` worker processes sharing the study), finalize,
and return the study's summary. The CLI parses and prints; this module decides and runs.

Imports beyond the spec are made where they are needed: a ``--jobs`` worker is this module too,
and should pay neither for what only its parent does (finalizing) nor the parent for training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hpo.spec import StudySpec
from hpo.spec_overrides import SpecOverrides
from hpo.storage import HEARTBEAT_INTERVAL
from hpo.storage_url import RUNS_DIR

if TYPE_CHECKING:  # for annotations only
    import optuna
    import torch
    from optuna.storages import RDBStorage

    from hpo.device import WorkerPlan
    from hpo.mnist import Mnist
    from hpo.study_summary import StudySummary

Log = Callable[[str], None]


@dataclass(frozen=True)
class TuningOptions:
    spec: StudySpec  # with the command line's overrides applied
    spec_path: Path  # the file ``spec`` came from, which each --jobs worker loads again
    study_name: str
    trials: int  # finished (complete + pruned) trials wanted in the study in total
    storage: str  # URL
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    jobs: int | None = None  # None: one per GPU with auto|cuda and several GPUs, else 1
    # Seconds; None: the study's own (hpo.study_setup.HEARTBEAT_ATTR), else HEARTBEAT_INTERVAL.
    heartbeat: int | None = None
    timeout: float | None = None  # start no new trial after this many seconds
    data_dir: Path | None = None
    finalize: bool = True
    compile: bool | None = None  # None: compile where the device supports it
    # Applied to ``spec`` already; kept for the workers, which apply them to the file again.
    overrides: SpecOverrides = field(default_factory=SpecOverrides)


def tune(options: TuningOptions, *, log: Log, stream: TextIO | None) -> StudySummary:
    """Run the study to ``options.trials`` finished trials and finalize it; returns its summary.
    Notes go to ``log``; the progress display (this process's, or the workers' drawn here) and
    the workers' warnings to ``stream``."""
    import optuna

    from hpo.data import ensure_mnist
    from hpo.device import (
        mps_available,
        plan_workers,
        resolve_device,
        usable_cpus,
        visible_cuda_devices,
    )
    from hpo.finalize import finalize
    from hpo.mnist import Mnist
    from hpo.retrain import models_dir
    from hpo.storage import open_storage, reporting_loss
    from hpo.study_setup import restore_baseline
    from hpo.study_summary import summarize

    plan = plan_workers(
        options.device,
        options.jobs,
        cuda_count=visible_cuda_devices(),
        cpu_count=usable_cpus(),
        mps=mps_available(),
    )
    devices = {d: resolve_device(d) for d in plan.devices}  # an absent one fails here, once
    storage = open_storage(
        options.storage, heartbeat_interval=options.heartbeat or HEARTBEAT_INTERVAL
    )
    # Every process of a study beats alike, as each judges the others' trials lost by its own:
    # without --heartbeat the storage takes the study's where one exists (check_study's and
    # open_study's adopt_heartbeat), also one another machine made while this run started.
    inherited, resuming = _prepare(options, storage, plan, devices, log)
    n_trials = options.trials
    study_name = options.study_name
    with reporting_loss(storage.url):
        restored, n_trials = restore_baseline(storage, study_name, n_trials)
    if restored:
        log(f"note: {restored}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress line reports trials
    device = devices[plan.devices[0]]
    mnist: Mnist | None = None  # with workers, they load their own; this process to finalize
    if plan.jobs == 1:
        mnist = Mnist.load(options.data_dir, log=log)
        _claim_tensorboard(options, storage, log, new=not resuming)
        summary = _search(options, storage, n_trials, device, mnist, stream)
    else:
        ensure_mnist(options.data_dir, log=log)  # here, once, rather than by racing workers
        study = _claim_tensorboard(options, storage, log, new=not resuming)
        # The study's heartbeat, for the workers' command lines.
        options = dataclasses.replace(options, heartbeat=storage.get_heartbeat_interval())
        summary = _run_workers(options, study, storage, n_trials, plan, inherited, log, stream)
    if options.finalize and summary.best is not None:
        mnist = mnist or Mnist.load(options.data_dir)
        with reporting_loss(storage.url):
            study = optuna.load_study(study_name=study_name, storage=storage)
            models = models_dir(RUNS_DIR, study_name)  # where hpo report looks
            finalize(
                study,
                mnist,
                device,
                compile=options.compile,
                cache_dir=models,
                export_dir=RUNS_DIR / study_name,
                log=log,
            )
            summary = summarize(study, storage, n_trials, summary.stopped_early)
    return summary


def tune_as_worker(options: TuningOptions) -> None:
    """One worker of ``--jobs``: the study loop on ``options.device``, silent (its parent draws
    the one display and finalizes). The data is its parent's download, not fetched again."""
    import optuna

    from hpo.device import resolve_device
    from hpo.mnist import Mnist
    from hpo.storage import open_storage

    # Its parent passes the study's --heartbeat: never None here.
    storage = open_storage(
        options.storage, heartbeat_interval=options.heartbeat or HEARTBEAT_INTERVAL
    )
    device = resolve_device(options.device)
    mnist = Mnist.load(options.data_dir, download=False)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _search(options, storage, options.trials, device, mnist, None)


def _prepare(
    options: TuningOptions,
    storage: RDBStorage,
    plan: WorkerPlan,
    devices: dict[str, torch.device],
    log: Log,
) -> tuple[dict[str, str], bool]:
    """Everything before the first trial: the study checked against the spec (a mismatch is
    refused before any note), the notes, and on a CPU the ahead-of-time package. Returns the
    environment the workers inherit (a failed package build, not to be retried by each), and
    whether the study exists already."""
    from hpo.device import resolve_precision, slow_bf16_note
    from hpo.step_compile import use_compile
    from hpo.storage import reporting_loss
    from hpo.storage_url import dashboard_command, mask_url
    from hpo.study_setup import check_study, resume_notes, setup_notes
    from hpo.tb import tensorboard_dir

    spec, study_name = options.spec, options.study_name
    log(f"storage: {mask_url(storage.url)}  study: {study_name}  target: {options.trials} trials")
    log(f"browse:  {dashboard_command(options.storage)}")
    log(f"         tensorboard --logdir {tensorboard_dir(RUNS_DIR, study_name)}")
    with reporting_loss(storage.url):
        resuming = check_study(spec, storage, study_name, adopt_heartbeat=options.heartbeat is None)
    precisions = {name: resolve_precision(spec.precision, d) for name, d in devices.items()}
    resolved = ", ".join(f"{p} on {name}" for name, p in precisions.items())
    log(f"precision: {spec.precision}" + (f" -> {resolved}" if spec.precision == "auto" else ""))
    slow = {slow_bf16_note(device, spec.precision) for device in devices.values()}
    mixed: list[str] = []
    if resuming:
        auto = {str(p) for p in precisions.values()} if spec.precision == "auto" else None
        with reporting_loss(storage.url):
            eager = options.compile is False
            compiles = any(use_compile(d, options.compile) for d in devices.values())
            mixed = resume_notes(storage, study_name, auto=auto, eager=eager, compiles=compiles)
    for note in [*setup_notes(spec), *sorted(n for n in slow if n), *mixed]:
        log(f"note: {note}")
    if options.compile is False or "cpu" not in plan.devices:
        return {}, resuming
    from hpo.aot_step import prepare

    # For the workers' thread count and the study's precision; before any trial starts.
    return prepare(plan.threads, log, precisions["cpu"]), resuming


def _claim_tensorboard(
    options: TuningOptions, storage: RDBStorage, log: Log, *, new: bool
) -> optuna.Study:
    """Just before the first trial (the data there): the study made or resumed, and
    runs/<study>/tensorboard made its own, another's events there moved aside (hpo.tb.claim).
    Returns the study."""
    from hpo.storage import reporting_loss
    from hpo.study_setup import open_study, study_uid
    from hpo.tb import claim

    with reporting_loss(storage.url):
        name, given = options.study_name, options.heartbeat is not None
        study = open_study(options.spec, storage, name, adopt_heartbeat=not given)
        uid = study_uid(study)
    if aside := claim(RUNS_DIR, name, uid, new=new):
        log(f"note: TensorBoard events of another study named {name} moved to {aside}")
    return study


def _run_workers(
    options: TuningOptions,
    study: optuna.Study,
    storage: RDBStorage,
    n_trials: int,
    plan: WorkerPlan,
    inherited: dict[str, str],
    log: Log,
    stream: TextIO | None,
) -> StudySummary:
    """``--jobs`` worker processes share ``study`` (opened here, before they load it); this
    process draws their progress."""
    from hpo.device import crowded_note, usable_cpus
    from hpo.records import FINISHED
    from hpo.storage import GRACE_FACTOR, reporting_loss
    from hpo.study_summary import summarize
    from hpo.workers import describe_plan, run_parallel

    with reporting_loss(storage.url):
        # No more workers than trials left (none when the target is met): each of the others
        # would load torch and the data only to find nothing to do.
        done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
        if done >= n_trials:
            return summarize(study, storage, n_trials)
        asked, start = plan.jobs, plan.devices[: n_trials - done]
        plan = dataclasses.replace(plan, devices=start)  # the threads each as planned
        log(describe_plan(plan.devices, plan.threads))
        if len(start) < asked:
            log(f"note: {n_trials - done} trial(s) left, so {len(start)} of the {asked} workers")
        if crowded := crowded_note(plan, usable_cpus()):
            log(f"note: {crowded}")
        # n_trials, not options.trials: restore_baseline may have raised the target.
        worker_options = dataclasses.replace(options, trials=n_trials)
        # --jobs as asked: a worker sets its threads from it, as the step package was built.
        argvs = [worker_argv(worker_options, i, d, asked) for i, d in enumerate(plan.devices)]
        grace = GRACE_FACTOR * (storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL)
        run_parallel(argvs, plan, study, n_trials, options.storage, grace, stream, inherited)
        summary = summarize(study, storage, n_trials)
    if options.timeout is not None and summary.finished < n_trials:
        summary = dataclasses.replace(summary, stopped_early="timeout")
    return summary


def _search(
    options: TuningOptions,
    storage: RDBStorage,
    n_trials: int,
    device: torch.device,
    mnist: Mnist,
    stream: TextIO | None,
) -> StudySummary:
    """The study loop of this process; progress to ``stream`` (a worker of --jobs passes None:
    its parent draws the one display)."""
    from hpo.progress import Progress
    from hpo.search import run_study

    return run_study(
        options.spec,
        storage,
        options.study_name,
        n_trials,
        device,
        mnist,
        Progress(stream),
        timeout=options.timeout,
        compile=options.compile,
    )


def worker_argv(options: TuningOptions, index: int, device: str, jobs: int) -> list[str]:
    """The hidden worker command: this run's settings, resolved; the storage URL travels in the
    environment instead (see hpo.workers.worker_env)."""
    argv = ["run", "--worker", str(index), "--jobs", str(jobs), "--spec", str(options.spec_path)]
    argv += ["--study", options.study_name, "--trials", str(options.trials), "--device", device]
    argv += ["--no-finalize", *options.overrides.argv()]
    if options.heartbeat is not None:  # resolved by tune: the study's
        argv += ["--heartbeat", str(options.heartbeat)]
    for flag, value in (
        ("--timeout", options.timeout),
        ("--data-dir", options.data_dir),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--no-compile"] if options.compile is False else [])
