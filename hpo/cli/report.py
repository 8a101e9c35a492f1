"""``hpo report``: one self-contained HTML page and a CSV: did tuning beat the tutorial?"""

from __future__ import annotations

import argparse
import json

from hpo.cli.common import (
    ParagraphFormatter,
    UsageError,
    add_data_dir,
    add_device,
    add_format,
    add_storage,
    log,
    path_arg,
    refuse_foreign,
    study_arg,
)
from hpo.jsonable import finite


def register(sub: argparse._SubParsersAction) -> None:
    from hpo.spec import DEFAULT_SPEC

    default_study = DEFAULT_SPEC.stem  # hpo.report.DEFAULT_STUDY, without the report's imports

    p = sub.add_parser(
        "report",
        help="HTML report of a study: verdict vs the tutorial, tables, figures, pictures",
        description="Write one self-contained HTML file (opens offline) and the trials as CSV. "
        "The pictures retrain the best and the tutorial's configurations on all 60,000 "
        "training images once; the models are cached under runs/<study>/models/.",
        formatter_class=ParagraphFormatter,
        epilog="examples:\n"
        "  hpo report                          the default study\n"
        "  hpo report --confirm 5              retrain the top 3 and the baseline over 5 seeds\n"
        "  hpo report --study s --storage sqlite:///other.db --out /tmp/s.html --no-pictures\n",
    )
    p.add_argument(
        "--study",
        type=study_arg,
        default=default_study,
        help=f"study name (default: {default_study})",
    )
    add_storage(p)
    p.add_argument(
        "--out",
        type=path_arg,
        default=None,
        help="HTML file to write (default: runs/<study>/report.html); "
        "the trials' table is written beside it (trials.csv beside report.html, "
        "NAME-trials.csv beside NAME.html)",
    )
    p.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="N",
        help="retrain the top configurations and the baseline over N seeds each on "
        "the full training set and score them on the test set (stored on the study)",
    )
    p.add_argument(
        "--top",
        type=int,
        default=None,
        metavar="K",
        help="how many of the best configurations --confirm retrains (default: 3)",
    )
    p.add_argument(
        "--no-pictures",
        action="store_true",
        help="skip the matplotlib pictures (and the two retrainings they need)",
    )
    add_format(p, "what goes to stdout: a short summary (table) or JSON")
    add_device(p)
    add_data_dir(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from hpo.device import resolve_device
    from hpo.records import models_text
    from hpo.report import ReportOptions, build_report

    if args.confirm < 0:
        raise UsageError(f"--confirm must be 0 or more seeds (got {args.confirm})")
    if args.confirm == 1:
        raise UsageError("--confirm needs at least 2 seeds for an interval (got 1)")
    if args.top is not None and not args.confirm:
        raise UsageError(
            f"--top {args.top} chooses how many configurations --confirm retrains; add "
            "--confirm N (N seeds each), or leave --top out"
        )
    top = 3 if args.top is None else args.top
    if top < 1:
        raise UsageError(f"--top must be at least 1 (got {top})")
    options = ReportOptions(
        study=args.study,
        storage=args.storage,
        out=args.out,
        confirm=args.confirm,
        top_k=top,
        pictures=not args.no_pictures,
        # Only what trains needs one: an absent --device/$HPO_DEVICE GPU fails only then.
        device=resolve_device(args.device if args.confirm or not args.no_pictures else "cpu"),
        data_dir=args.data_dir,
    )
    # Before anything trains (--confirm): a study's database given as --out would be lost.
    page = "--out" if args.out else "the report's file"  # the default, runs/<study>/...
    fix = f"--out such as {args.study}.html"
    refuse_foreign(options.html_path, b"<!doctype html", what=page, fix=fix)
    refuse_foreign(options.csv_path, b"trial,", what="the trials' table", fix=fix)
    report = build_report(options, log=log)
    v = report.verdict
    if args.format == "json":
        diff = v.difference
        print(
            json.dumps(
                {
                    "html": str(report.html_path),
                    "csv": str(report.csv_path),
                    "html_bytes": report.html_bytes,
                    "partial": report.partial,
                    "verdict": v.kind,
                    "headline": v.headline,
                    "best_trial": v.best.trial if v.best else None,
                    "baseline_trial": v.baseline.trial if v.baseline else None,
                    "difference": None
                    if diff is None
                    else {
                        "test_acc": diff.diff,
                        "low": diff.low,
                        "high": diff.high,
                        "df": finite(diff.df),
                    },
                    "notes": list(report.notes),
                    "models": report.models,
                },
                indent=2,
            )
        )
        return 0
    for note in report.notes:
        log(f"report: {note}")
    print(v.headline)
    print(f"wrote {report.html_path} ({report.html_bytes / 1e6:.1f} MB) and {report.csv_path}")
    if report.models:
        print(f"models: {models_text(report.models)}")
    return 0
