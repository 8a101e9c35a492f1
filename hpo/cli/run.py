"""``hpo run``: tune the recipe with Optuna; resumable, pruned, finalized on the test set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hpo.cli.common import UsageError, add_data_dir, add_device, log
from hpo.search import StudySummary
from hpo.spec import StudySpec
from hpo.storage import DEFAULT_STORAGE, HEARTBEAT_INTERVAL

DEFAULT_SPEC = Path("studies/mnist_mlp.toml")

EXAMPLES = """\
examples:
  hpo run --trials 50                        the default study (studies/mnist_mlp.toml)
  hpo run --trials 6 --epochs 3 --study quick  a short look, in its own study
  hpo run --spec studies/smoke.toml          a tiny spec, for checking a setup
  hpo run --storage postgresql://user:pw@host/db   a shared database (workers, later)

Rerun the same command after Ctrl-C, a crash or a reboot: --trials counts the finished
(complete + pruned) trials of the study in total, so it finishes the job.
Browse while it runs:  optuna-dashboard sqlite:///runs/hpo.db
                       tensorboard --logdir runs/<study>/tensorboard
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="tune the recipe with Optuna (resumable study, pruning, live progress)",
        description="Search lr, momentum, hidden sizes and the lr schedule of the tutorial's MLP; "
        "trial 0 is always the tutorial's own configuration.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument("--study", default=None, help="study name (default: the spec file's stem)")
    add_storage(p)
    add_device(p)
    p.add_argument("--seed", type=int, default=None, help="study seed (default: the spec's)")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial (default: the spec's)"
    )
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
        help="train eagerly: no torch.compile warm-up, slower epochs",
    )
    add_format(p)
    p.set_defaults(func=handler)


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"Optuna storage URL (default: {DEFAULT_STORAGE}, relative to the current dir)",
    )


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="summary format on stdout (default: table)",
    )


def load_spec_args(args: argparse.Namespace) -> StudySpec:
    from hpo.spec import SpecError, load_spec

    try:
        return load_spec(args.spec).with_overrides(epochs=args.epochs, seed=args.seed)
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def handler(args: argparse.Namespace) -> int:
    if args.trials is not None and args.trials < 1:
        raise UsageError(
            f"--trials must be >= 1 (got {args.trials}): the number of finished "
            "trials wanted in the study in total"
        )
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds (got {args.timeout})")
    if args.heartbeat < 1:
        raise UsageError(f"--heartbeat must be >= 1 second (got {args.heartbeat})")
    spec = load_spec_args(args)
    study_name = args.study or args.spec.stem
    if not study_name.strip():
        raise UsageError("--study must not be empty")
    n_trials = args.trials or spec.trials

    import optuna

    from hpo.device import resolve_device
    from hpo.mnist import Mnist
    from hpo.progress import Progress
    from hpo.search import check_study, finalize, run_study, setup_notes, summarize
    from hpo.storage import dashboard_command, mask_url, open_storage
    from hpo.tb import tensorboard_dir

    storage = open_storage(args.storage, heartbeat_interval=args.heartbeat)
    log(f"storage: {mask_url(storage.url)}  study: {study_name}  target: {n_trials} trials")
    log(f"browse:  {dashboard_command(storage.url)}")
    log(f"         tensorboard --logdir {tensorboard_dir(Path('runs'), study_name)}")
    for note in setup_notes(spec):
        log(f"note: {note}")
    check_study(spec, storage, study_name)  # refuses a mismatched study before loading data
    device = resolve_device(args.device)
    mnist = Mnist.load(args.data_dir, log=log)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the progress line reports trials
    compile_ = False if args.no_compile else None
    summary = run_study(
        spec,
        storage,
        study_name,
        n_trials,
        device,
        mnist,
        Progress(sys.stderr),
        timeout=args.timeout,
        compile=compile_,
    )
    if not args.no_finalize and summary.best is not None:
        study = optuna.load_study(study_name=study_name, storage=storage)
        finalize(study, mnist, device, compile=compile_, log=log)
        summary = summarize(study, storage, n_trials, summary.stopped_early)
    print(format_summary(summary, args.format))
    return 0


def format_summary(s: StudySummary, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(s.to_dict(), indent=2)
    saved = 1 - s.epochs_run / s.epochs_without_pruning if s.epochs_without_pruning else 0.0
    lines = [
        f"study     {s.study_name}  ({s.storage})",
        f"trials    {s.finished} finished of {s.target}: {s.complete} complete, "
        f"{s.pruned} pruned; {s.failed} failed" + (f"; {s.running} running" if s.running else ""),
        f"epochs    {s.epochs_run} run of {s.epochs_without_pruning} without pruning "
        f"({saved:.0%} saved; {s.epochs} per trial)",
    ]
    if s.stopped_early:
        lines.append(f"stopped   early ({s.stopped_early}); rerun the same command to go on")
    if s.best is not None:
        params = "  ".join(f"{k}={_short(v)}" for k, v in s.best.params.items())
        lines.append(f"best      trial {s.best.number}: {params}")
    final = s.final or {}
    rows = [("best", s.best), ("baseline", s.baseline)]
    lines.append(f"\n{'':16}{'val acc':>9}{'test acc':>10}{'s/epoch':>9}")
    for role, brief in rows:
        if brief is None:
            continue
        done = final.get(role) or {}
        if done.get("trial") != brief.number:
            done = {}
        lines.append(
            f"{f'{role} (#{brief.number})':16}{_pct(brief.val_acc):>9}"
            f"{_pct(done.get('test_acc')):>10}"
            f"{_num(done.get('seconds_per_epoch')):>9}"
        )
    if not final:
        lines.append(f"(test accuracy: not finalized; run `hpo finalize --study {s.study_name}`)")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, int | float) else "-"


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, int | float) else "-"
