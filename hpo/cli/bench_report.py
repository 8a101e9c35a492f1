"""``hpo bench-report``: turn a ``pytest benchmarks/ --benchmark-json`` file into Markdown."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo.bench_report import BenchFileError, load, markdown
from hpo.cli.common import path_arg, refuse_foreign
from hpo.files import replacing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-report",
        help="Markdown table (machine, versions, ratios) from a benchmark JSON file",
        epilog="example: pytest benchmarks/ --benchmark-json runs/bench.json && "
        "hpo bench-report runs/bench.json",
    )
    p.add_argument(
        "json",
        type=Path,
        nargs="?",
        default=Path("runs/bench.json"),
        help="the benchmark JSON file (default: runs/bench.json)",
    )
    p.add_argument("--out", type=path_arg, default=None, help="write here instead of stdout")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.json.is_dir():  # it exists: "does not exist" would send the user looking for it
        found = ", ".join(sorted(p.name for p in args.json.glob("*.json"))) or "none"
        raise BenchFileError(
            f"{args.json} is a folder, not a benchmark JSON file (JSON files there: {found}): "
            "pass the file that `pytest benchmarks/ --benchmark-json FILE` wrote"
        )
    if not args.json.exists():  # like a missing study for `hpo report`: an error, exit 1
        raise BenchFileError(
            f"{args.json} does not exist: run `pytest benchmarks/ --benchmark-json {args.json}` "
            "first"
        )
    if args.out:  # the benchmark file itself, say: what this command writes starts "Machine:"
        refuse_foreign(args.out, b"Machine:", what="--out", fix="--out such as runs/bench.md")
    text = markdown(load(args.json))
    if args.out:
        with replacing(args.out) as tmp:  # its folders made, as hpo report --out does
            tmp.write_text(text)
        print(f"wrote {args.out}")  # as hpo report says where its files went
    else:
        print(text, end="")
    return 0
