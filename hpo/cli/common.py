"""Shared CLI plumbing: error exits, logging to stderr, common flags."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn

from hpo import interrupts
from hpo.config import PRECISION_CHOICES
from hpo.files import foreign
from hpo.storage_url import DEFAULT_STORAGE, STORAGE_ENV, default_storage

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input the user can fix (a flag, a spec): exit code 2."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended


def stop_once(signum: int, frame: object) -> NoReturn:
    """A worker's SIGINT and SIGTERM handler: the first stops it as Ctrl-C does; any more are
    ignored, so that they cannot cut short the re-queue of its trial (both come when a batch
    system signals every process of a job; the parent's second Ctrl-C kills workers outright)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    interrupts.stop(signum)


def fail(message: str, code: int) -> int:
    print(f"hpo: error: {message}", file=sys.stderr, flush=True)
    return code


class ParagraphFormatter(argparse.HelpFormatter):
    """Help text for a verb with laid-out examples: a description or epilog written with line
    breaks (an example list, a docstring) is kept as written, as ``RawDescriptionHelpFormatter``
    keeps it; one written as a single paragraph is filled to the terminal's width."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding MNIST (default: $HPO_DATA_DIR or ~/.cache/hpo/mnist)",
    )


def device_name(text: str) -> str:
    """``--device``'s syntax, checked at parse time (a usage error, exit 2); whether the device
    is there is checked later, by the command that needs it."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", name):
        return name
    raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")


def add_precision(parser: argparse.ArgumentParser, default: str | None, default_text: str) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=default,
        help="fp32; bf16: the hidden layers' matmuls in bfloat16, 1.4-1.7x faster epochs on a CPU "
        f"with AVX512-BF16 or AMX; auto: bf16 on such a CPU, else fp32 (default: {default_text})",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default=None,  # then $HPO_DEVICE or auto: device_default, so that errors can name it
        help="auto (an accelerator when present), cpu, cuda, cuda:N or mps (default: auto, or "
        "$HPO_DEVICE)",
    )


def device_default(args: argparse.Namespace) -> str | None:
    """Fill in ``--device`` when it was not given: ``$HPO_DEVICE``, else auto. Returns the
    variable's words ("$HPO_DEVICE=cuda") when it decided, for errors to name; a malformed
    value is a usage error naming the variable."""
    if not hasattr(args, "device") or args.device is not None:
        return None
    env = os.environ.get("HPO_DEVICE", "").strip()
    if not env:
        args.device = "auto"
        return None
    try:
        args.device = device_name(env)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"$HPO_DEVICE: {exc}; or unset it") from None
    return f"$HPO_DEVICE={env}"


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        default=default_storage(),
        help=f"Optuna storage URL (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE}, relative to "
        "the current dir); the password is masked in everything printed",
    )


def add_format(
    p: argparse.ArgumentParser, what: str = "summary format on stdout (default: table)"
) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table", help=what)


def compile_flag(args: argparse.Namespace) -> bool | None:
    return False if args.no_compile else None  # None: compile where the device supports it


# The study's folder under runs/ takes its name, and file systems allow 255 bytes a name
# (ext4, APFS, NTFS's 255 UTF-16 units); a margin below that, checked before anything is made.
STUDY_NAME_BYTES = 200


def study_arg(text: str) -> str:
    """An argparse type: a study's name is also its folder under runs/ (TensorBoard events,
    models, the report), so it must name one folder there, not a path out of it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a study name must not be empty")
    if "/" in text or "\\" in text or text in (".", "..") or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a study name hpo can use: it is also the study's folder under "
            "runs/, so it cannot contain / or \\ or be . or ..; e.g. mnist_mlp-2"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a study name hpo can use: it contains a control character (a "
            "newline, a tab); e.g. mnist_mlp-2"
        )
    if (size := len(text.encode())) > STUDY_NAME_BYTES:
        raise argparse.ArgumentTypeError(
            f"a study name of {size} bytes is too long: it is also the study's folder under "
            f"runs/, and file systems allow 255 bytes; use at most {STUDY_NAME_BYTES}"
        )
    return text


def path_arg(text: str) -> Path:
    """An argparse type for a path to write: an empty one would be the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a path must not be empty")
    return Path(text)


def refuse_foreign(path: Path, *heads: bytes, what: str, fix: str) -> None:
    """A usage error where ``path`` holds something other than what this command writes there
    (a file starting with one of ``heads``): replacing it would lose it (a study's database
    given as --out, say). ``what``: the path's role, for the message ("--out"); ``fix``:
    another path to suggest."""
    kind = foreign(path, *heads)
    if kind == "a folder":
        raise UsageError(f"{what} {path} is a folder; name a file to write ({fix})")
    if kind is not None:
        raise UsageError(
            f"{what} {path} is {kind}, which this command would replace and lose; it replaces "
            f"only its own files. Pass another path ({fix}), or move that one away first"
        )
