"""``hpo run``: tune the recipe with Optuna; resumable, pruned, finalized on the test set."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
from hpo.spec_overrides import SpecOverrides
from hpo.storage import HEARTBEAT_INTERVAL

if TYPE_CHECKING:  # for annotations only: the parser is built without importing torch
    from hpo.tuning import TuningOptions


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
        metavar="SECONDS",
        help="trial heartbeat; a trial silent for 3x this is failed and re-queued (default: "
        f"the study's, set by its first run; {HEARTBEAT_INTERVAL} for a new study)",
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
        return _overrides(args).apply(load_spec(args.spec))
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def handler(args: argparse.Namespace) -> int:
    _check_flags(args)
    options = tuning_options(args)
    if args.worker is not None:
        return _worker(options)
    from hpo.tuning import tune

    print(format_summary(tune(options, log=log, stream=sys.stderr), args.format))
    return 0


def tuning_options(args: argparse.Namespace) -> TuningOptions:
    """The run the flags ask for, its spec loaded; bad flags and specs are usage errors."""
    from hpo.tuning import TuningOptions

    spec = load_spec_args(args)
    try:  # the spec's stem is checked as a --study would be
        study_name = study_arg(args.spec.stem if args.study is None else args.study)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(
            f"the study's name, the stem of {args.spec}: {exc}; or pass --study"
        ) from None
    return TuningOptions(
        spec=spec,
        spec_path=args.spec,
        study_name=study_name,
        trials=args.trials or spec.trials,
        storage=args.storage,
        device=args.device,
        jobs=args.jobs,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
        data_dir=args.data_dir,
        finalize=not args.no_finalize,
        compile=compile_flag(args),
        overrides=_overrides(args),
    )


def _overrides(args: argparse.Namespace) -> SpecOverrides:
    return SpecOverrides(seed=args.seed, epochs=args.epochs, precision=args.precision)


def _check_flags(args: argparse.Namespace) -> None:
    if args.trials is not None and args.trials < 1:
        raise UsageError(
            f"--trials must be >= 1 (got {args.trials}): the number of finished "
            "trials wanted in the study in total"
        )
    if args.timeout is not None and not (0 < args.timeout < math.inf):  # nan too
        raise UsageError(f"--timeout must be a number of seconds > 0 (got {args.timeout})")
    if args.heartbeat is not None and args.heartbeat < 1:
        raise UsageError(f"--heartbeat must be >= 1 second (got {args.heartbeat})")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1 (got {args.jobs})")


def _worker(options: TuningOptions) -> int:
    """One worker of ``--jobs``: silent; its outcome goes to stdout as one JSON line."""
    from hpo.device import set_threads, usable_cpus, worker_threads
    from hpo.worker_outcomes import outcome_of
    from hpo.workers import exit_with_parent

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_once)
    exit_with_parent()
    set_threads(worker_threads(options.jobs or 1, usable_cpus()))  # before any torch work
    error: BaseException | None = None
    try:
        from hpo.tuning import tune_as_worker

        tune_as_worker(options)
    except (KeyboardInterrupt, Exception) as exc:  # every ending becomes the outcome line
        error = exc
    outcome, code = outcome_of(error)
    if outcome.kind == "crash" and error is not None:
        import traceback

        traceback.print_exception(error)  # to this worker's stderr, which the parent shows
    print(outcome.to_json(), flush=True)
    return code
