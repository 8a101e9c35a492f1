"""``hpo baseline``: the tutorial's run, as written."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo.cli.common import (
    UsageError,
    add_data_dir,
    add_device,
    add_precision,
    log,
    path_arg,
)
from hpo.config import LOADERS, PrecisionChoice, TrainConfig
from hpo.spec_overrides import seed_problem


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="the tutorial's 20-epoch run (its hyperparameters, its softmax head)",
        description="Reproduce the tutorial: train on all 60k images and, as the tutorial does, "
        "evaluate on the TEST set every epoch. Writes metrics.csv/json, TensorBoard events and "
        "the tutorial's two figures under --out; they replace a previous run's there only once "
        "this run is complete (until then it writes in --out's partial/ folder).",
        epilog="example: hpo baseline --epochs 3 --loader torchvision --device cpu",
    )
    add_data_dir(p)
    add_device(p)
    p.add_argument("--epochs", type=int, default=20, help="the tutorial's 20 by default")
    p.add_argument("--seed", type=int, default=0, help="torch seed (default: 0)")
    p.add_argument(
        "--loader",
        choices=LOADERS,
        default="tensor",
        help="tensor: whole set on the device (fast); torchvision: the tutorial's "
        "DataLoader + transforms",
    )
    add_precision(p, "fp32", "fp32, the tutorial's")
    p.add_argument(
        "--out",
        type=path_arg,
        default=Path("runs/baseline"),
        help="folder (default: runs/baseline)",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    # torch and matplotlib: imported here, not for --help or the other verbs
    from hpo.baseline import run_baseline, tutorial_line
    from hpo.device import describe, resolve_device, resolve_precision, slow_bf16_note
    from hpo.mnist import Mnist

    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1 (got {args.epochs})")
    if problem := seed_problem(args.seed):
        raise UsageError(problem)
    if args.precision == "bf16" and args.loader == "torchvision":
        raise UsageError("--precision bf16 needs --loader tensor: the tutorial's loop is fp32")
    if args.out.exists() and not args.out.is_dir():  # before the data loads and it trains
        raise UsageError(
            f"--out {args.out} is a file; it names the folder for the run's record and figures: "
            "give a folder (default: runs/baseline)"
        )
    device = resolve_device(args.device)
    precision: PrecisionChoice = "fp32" if args.loader == "torchvision" else args.precision
    config = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        loader=args.loader,
        precision=resolve_precision(precision, device),
    )
    slow = slow_bf16_note(device, args.precision)
    if slow:
        log(f"note: {slow}")
    mnist = Mnist.load(args.data_dir, log=log)
    if device.type == "cpu" and args.loader == "tensor":
        from hpo.aot_step import prepare

        prepare(None, log, config.precision)
    log(
        f"baseline: the tutorial's recipe on {describe(device)}, {args.loader} path, "
        f"{config.precision}; "
        "evaluated on the TEST set each epoch, as the tutorial does"
    )
    run = run_baseline(
        mnist, device, args.out, config, on_epoch=lambda m: print(tutorial_line(m), flush=True)
    )
    args.after_interrupt = f"the baseline run is complete and stored in {run.out_dir}"
    r = run.result
    log(
        f"train time {r.train_seconds:.1f} s ({r.train_seconds / len(r.epochs):.2f} s/epoch), "
        f"compiled step: {'ahead of time' if r.step.aot else 'yes' if r.step.compiled else 'no'}, "
        f"CUDA graphs: {'yes' if r.step.graphed else 'no'}"
    )
    n = len(r.epochs)
    print(f"final test accuracy: {r.final.eval_acc:.4f}  ({r.status}, {n} epoch{'s' * (n != 1)})")
    for path in run.files:
        log(f"wrote {path}")
    return 0
