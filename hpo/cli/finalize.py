"""hpo finalize: retrain an existing study's best and baseline trials on all 60,000 training
images and score each on the test set (hpo run does this at its end)."""

from __future__ import annotations

import argparse

from hpo.cli.common import (
    ParagraphFormatter,
    add_data_dir,
    add_device,
    add_format,
    add_storage,
    compile_flag,
    log,
    study_arg,
)
from hpo.cli.summary import format_summary
from hpo.spec import DEFAULT_SPEC


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finalize",
        help="test-set result of a study: retrain its best and baseline trials on 60k",
        description=__doc__,
        epilog="example:\n  hpo finalize --study mnist_mlp --format json",
        formatter_class=ParagraphFormatter,
    )
    p.add_argument(
        "--study",
        type=study_arg,
        default=DEFAULT_SPEC.stem,
        help=f"study name (default: {DEFAULT_SPEC.stem})",
    )
    add_storage(p)
    add_device(p)
    add_data_dir(p)
    p.add_argument(
        "--no-compile", action="store_true", help="train eagerly: no compiled step, slower epochs"
    )
    add_format(p)
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    import optuna

    from hpo.device import resolve_device
    from hpo.finalize import finalize
    from hpo.mnist import Mnist
    from hpo.records import target_of
    from hpo.retrain import models_dir
    from hpo.storage import load_existing_study
    from hpo.storage_url import RUNS_DIR
    from hpo.study_summary import summarize

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage, study = load_existing_study(args.storage, args.study)
    device = resolve_device(args.device)
    mnist = Mnist.load(args.data_dir, log=log)
    models = models_dir(RUNS_DIR, args.study)  # where hpo report looks
    compile_ = compile_flag(args)
    finalize(
        study,
        mnist,
        device,
        force=True,
        compile=compile_,
        cache_dir=models,
        export_dir=RUNS_DIR / args.study,
        log=log,
    )
    target = target_of(study.user_attrs) or 0
    print(format_summary(summarize(study, storage, target), args.format))
    return 0
