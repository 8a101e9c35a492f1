"""``hpo run``: tune the recipe with Optuna; resumable, pruned, finalized on the test set."""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hpo.cli.common import (
    ParagraphFormatter,
    UsageError,
    add_data_dir,
    add_device,
    add_format,
    add_precision,
    add_storage,
    compile_flag,
    log,
    stop_once,
    study_arg,
)
from hpo.cli.summary import format_summary
from hpo.spec import DEFAULT_SPEC, StudySpec
from hpo.storage import HEARTBEAT_INTERVAL

if TYPE_CHECKING:  # for annotations only
    import optuna
    import torch
    from optuna.storages import RDBStorage

    from hpo.device import WorkerPlan
    from hpo.mnist import Mnist
    from hpo.search import StudySummary


# The checkout's own default spec (an editable install's), for a run from another folder.
SHIPPED_SPEC = Path(__file__).resolve().parents[2] / DEFAULT_SPEC

EXAMPLES = """\
examples:
  hpo run --trials 50                        the default study (studies/mnist_mlp.toml)
  hpo run --trials 6 --epochs 3 --study quick  a short look, in its own study
  hpo run --spec studies/smoke.toml          a tiny spec, for checking a setup
  hpo run --trials 200 --jobs 4              four worker processes share the study
  HPO_STORAGE=postgresql://hpo:PASSWORD@db-host/hpo hpo run --study s --trials 200
                                             the same on every machine: one shared study

Rerun the same command after Ctrl-C, a crash or a reboot: --trials counts the finished
(complete + pruned) trials of the study in total, so it finishes the job; so do all the
workers of a study together, on one machine or many.
Browse while it runs:  optuna-dashboard sqlite:///runs/hpo.db
                       tensorboard --logdir runs/<study>/tensorboard
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="tune the recipe with Optuna (resumable study, pruning, live progress)",
        description="Search lr, momentum, hidden sizes and the lr schedule of the tutorial's MLP; "
        "the first trial queued (trial 0) is the tutorial's own configuration.",
        epilog=EXAMPLES,
        formatter_class=ParagraphFormatter,
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="finished trials wanted in the study in total (default: the spec's)",
    )
    p.add_argument(
        "--spec",
        type=Path,
        default=DEFAULT_SPEC,
        help=f"study spec, TOML (default: {DEFAULT_SPEC}, relative to the current dir)",
    )
    p.add_argument(
        "--study",
        type=study_arg,
        default=None,
        help="study name (default: the spec file's stem)",
    )
    add_storage(p)
    add_device(p)
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes on this machine sharing the study (default: one per GPU with "
        "--device auto|cuda and several GPUs, else 1); the CPU threads are split between them",
    )
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=None, help="study seed (default: the spec's)")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial (default: the spec's)"
    )
    add_precision(p, None, "the spec's")
    p.add_argument(
        "--timeout", type=float, default=None, help="start no new trial after this many seconds"
    )
    add_data_dir(p)
    p.add_argument(
        "--no-finalize",
        action="store_true",
        help="skip retraining the best and the baseline on 60k + the test evaluation",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=HEARTBEAT_INTERVAL,
        metavar="SECONDS",
        help="trial heartbeat; a trial silent for 3x this is failed and re-queued "
        f"(default: {HEARTBEAT_INTERVAL})",
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="train eagerly: no compiled step (no build or warm-up), slower epochs",
    )
    add_format(p)
    p.set_defaults(func=handler)


def load_spec_args(args: argparse.Namespace) -> StudySpec:
    from hpo.spec import SpecError
    from hpo.spec_parse import load_spec

    if args.spec == DEFAULT_SPEC and not DEFAULT_SPEC.exists() and SHIPPED_SPEC.is_file():
        # Run outside the checkout with no --spec: its default spec, rather than an error.
        log(f"spec: {SHIPPED_SPEC} (no {DEFAULT_SPEC} here)")
        args.spec = SHIPPED_SPEC
    try:
        return load_spec(args.spec).with_overrides(
            epochs=args.epochs, seed=args.seed, precision=args.precision
        )
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def handler(args: argparse.Namespace) -> int:
    _check_flags(args)
    spec = load_spec_args(args)
    try:  # the spec's stem is checked as a --study would be
        study_name = study_arg(args.spec.stem if args.study is None else args.study)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(
            f"the study's name, the stem of {args.spec}: {exc}; or pass --study"
        ) from None
    n_trials = args.trials or spec.trials
    if args.worker is not None:
        return _worker(args, spec, study_name, n_trials)

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
    from hpo.search import summarize
    from hpo.storage import open_storage, reporting_loss
    from hpo.study_setup import restore_baseline

    plan = plan_workers(
        args.device,
        args.jobs,
        cuda_count=visible_cuda_devices(),
        cpu_count=usable_cpus(),
        mps=mps_available(),
    )
    devices = {d: resolve_device(d) for d in plan.devices}  # an absent one fails here, once
    storage = open_storage(args.storage, heartbeat_interval=args.heartbeat)
    inherited, resuming = _prepare(args, spec, storage, study_name, n_trials, plan, devices)
    with reporting_loss(storage.url):
        restored, n_trials = restore_baseline(storage, study_name, n_trials)
    if restored:
        log(f"note: {restored}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress line reports trials
    device = devices[plan.devices[0]]
    mnist: Mnist | None = None  # with workers, they load their own; this process to finalize
    if plan.jobs == 1:
        mnist = Mnist.load(args.data_dir, log=log)
        _claim_tensorboard(spec, storage, study_name, new=not resuming)
        summary = search(args, spec, storage, study_name, n_trials, device, mnist, sys.stderr)
    else:
        ensure_mnist(args.data_dir, log=log)  # here, once, rather than by racing workers
        study = _claim_tensorboard(spec, storage, study_name, new=not resuming)
        summary = _run_workers(args, study, storage, n_trials, plan, inherited)
    if not args.no_finalize and summary.best is not None:
        mnist = mnist or Mnist.load(args.data_dir)
        with reporting_loss(storage.url):
            study = optuna.load_study(study_name=study_name, storage=storage)
            models = models_dir(Path("runs"), study_name)  # where hpo report looks
            finalize(study, mnist, device, compile=compile_flag(args), cache_dir=models, log=log)
            summary = summarize(study, storage, n_trials, summary.stopped_early)
    print(format_summary(summary, args.format))
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    if args.trials is not None and args.trials < 1:
        raise UsageError(
            f"--trials must be >= 1 (got {args.trials}): the number of finished "
            "trials wanted in the study in total"
        )
    if args.timeout is not None and not (0 < args.timeout < math.inf):  # nan too
        raise UsageError(f"--timeout must be a number of seconds > 0 (got {args.timeout})")
    if args.heartbeat < 1:
        raise UsageError(f"--heartbeat must be >= 1 second (got {args.heartbeat})")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1 (got {args.jobs})")


def _prepare(
    args: argparse.Namespace,
    spec: StudySpec,
    storage: RDBStorage,
    study_name: str,
    n_trials: int,
    plan: WorkerPlan,
    devices: dict[str, torch.device],
) -> tuple[dict[str, str], bool]:
    """Everything before the first trial: the study checked against the spec (a mismatch is
    refused before any note), the notes, and on a CPU the ahead-of-time package. Returns the
    environment the workers inherit (a failed package build, not to be retried by each), and
    whether the study exists already."""
    from hpo.device import resolve_precision, slow_bf16_note
    from hpo.storage import reporting_loss
    from hpo.storage_url import dashboard_command, mask_url
    from hpo.study_setup import check_study, setup_notes
    from hpo.tb import tensorboard_dir

    log(f"storage: {mask_url(storage.url)}  study: {study_name}  target: {n_trials} trials")
    log(f"browse:  {dashboard_command(args.storage)}")
    log(f"         tensorboard --logdir {tensorboard_dir(Path('runs'), study_name)}")
    with reporting_loss(storage.url):
        resuming = check_study(spec, storage, study_name)
    precisions = {name: resolve_precision(spec.precision, d) for name, d in devices.items()}
    resolved = ", ".join(f"{p} on {name}" for name, p in precisions.items())
    log(f"precision: {spec.precision}" + (f" -> {resolved}" if spec.precision == "auto" else ""))
    slow = {slow_bf16_note(device, spec.precision) for device in devices.values()}
    for note in [*setup_notes(spec), *sorted(n for n in slow if n)]:
        log(f"note: {note}")
    if compile_flag(args) is False or "cpu" not in plan.devices:
        return {}, resuming
    from hpo.aot_step import prepare

    # For the workers' thread count and the study's precision; before any trial starts.
    return prepare(plan.threads, log, precisions["cpu"]), resuming


def _claim_tensorboard(
    spec: StudySpec, storage: RDBStorage, name: str, *, new: bool
) -> optuna.Study:
    """Just before the first trial (the data there): the study made or resumed, and
    runs/<study>/tensorboard made its own, another's events there moved aside (hpo.tb.claim).
    Returns the study."""
    from hpo.storage import reporting_loss
    from hpo.study_setup import open_study, study_uid
    from hpo.tb import claim

    with reporting_loss(storage.url):
        study = open_study(spec, storage, name)
        uid = study_uid(study)
    if aside := claim(Path("runs"), name, uid, new=new):
        log(f"note: TensorBoard events of another study named {name} moved to {aside}")
    return study


def _run_workers(
    args: argparse.Namespace,
    study: optuna.Study,
    storage: RDBStorage,
    n_trials: int,
    plan: WorkerPlan,
    inherited: dict[str, str],
) -> StudySummary:
    """``--jobs`` worker processes share ``study`` (opened here, before they load it); this
    process draws their progress."""
    from hpo.device import crowded_note, usable_cpus
    from hpo.search import summarize
    from hpo.storage import GRACE_FACTOR, reporting_loss
    from hpo.workers import describe_plan, run_parallel

    with reporting_loss(storage.url):
        log(describe_plan(plan.devices, plan.threads))
        if crowded := crowded_note(plan, usable_cpus()):
            log(f"note: {crowded}")
        argvs = [
            worker_argv(args, study.study_name, n_trials, i, d, plan.jobs)
            for i, d in enumerate(plan.devices)
        ]
        grace = GRACE_FACTOR * args.heartbeat
        run_parallel(argvs, plan, study, n_trials, args.storage, grace, env=inherited)
        summary = summarize(study, storage, n_trials)
    if args.timeout is not None and summary.finished < n_trials:
        summary = dataclasses.replace(summary, stopped_early="timeout")
    return summary


def search(
    args: argparse.Namespace,
    spec: StudySpec,
    storage: RDBStorage,
    study_name: str,
    n_trials: int,
    device: torch.device,
    mnist: Mnist,
    stream: TextIO | None,
) -> StudySummary:
    """The study loop of this process, with the run's flags; progress to ``stream`` (a worker
    of --jobs passes None: its parent draws the one display)."""
    from hpo.progress import Progress
    from hpo.search import run_study

    return run_study(
        spec,
        storage,
        study_name,
        n_trials,
        device,
        mnist,
        Progress(stream),
        timeout=args.timeout,
        compile=compile_flag(args),
    )


def worker_argv(
    args: argparse.Namespace, study_name: str, n_trials: int, index: int, device: str, jobs: int
) -> list[str]:
    """The hidden worker command: this run's settings, resolved; the storage URL travels in the
    environment instead (see hpo.workers.worker_env)."""
    argv = ["run", "--worker", str(index), "--jobs", str(jobs), "--spec", str(args.spec)]
    argv += ["--study", study_name, "--trials", str(n_trials), "--device", device]
    argv += ["--heartbeat", str(args.heartbeat), "--no-finalize"]
    for flag, value in (
        ("--seed", args.seed),
        ("--epochs", args.epochs),
        ("--precision", args.precision),
        ("--timeout", args.timeout),
        ("--data-dir", args.data_dir),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--no-compile"] if args.no_compile else [])


def _worker(args: argparse.Namespace, spec: StudySpec, study_name: str, n_trials: int) -> int:
    """One worker of ``--jobs``: silent; its outcome goes to stdout as one JSON line."""
    from hpo.device import set_threads, usable_cpus, worker_threads
    from hpo.workers import exit_with_parent, outcome_of

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_once)
    exit_with_parent()
    set_threads(worker_threads(args.jobs or 1, usable_cpus()))  # before any torch work
    error: BaseException | None = None
    try:
        import optuna

        from hpo.device import resolve_device
        from hpo.mnist import Mnist
        from hpo.storage import open_storage

        storage = open_storage(args.storage, heartbeat_interval=args.heartbeat)
        device = resolve_device(args.device)
        mnist = Mnist.load(args.data_dir, download=False)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        search(args, spec, storage, study_name, n_trials, device, mnist, None)
    except (KeyboardInterrupt, Exception) as exc:  # every ending becomes the outcome line
        error = exc
    outcome, code = outcome_of(error)
    if outcome.kind == "crash" and error is not None:
        import traceback

        traceback.print_exception(error)  # to this worker's stderr, which the parent shows
    print(outcome.to_json(), flush=True)
    return code
