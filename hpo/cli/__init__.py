"""``hpo <verb>``: each verb lives in its own module under ``hpo.cli`` and registers itself here.

Conventions (Optuna's own CLI): results on stdout, logs and progress on stderr; exit 0 on
success, 1 on an error, 2 on a usage error (bad flag, bad spec); kebab-case flags.
"""

from __future__ import annotations

# First: from here on a stop while the rest imports is one line, not a traceback.
from hpo.cli import loading  # isort: split

import argparse
import gc
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from hpo import interrupts
from hpo.cli.common import (
    EXIT_ERROR,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ParagraphFormatter,
    UsageError,
    device_default,
    fail,
)
from hpo.interrupts import Terminated
from hpo.storage_url import STORAGE_ENV

# Each module defines ``register(subparsers)`` which adds its verb and sets ``func``.
VERBS = ("data", "baseline", "run", "finalize", "report", "bench_report")


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: an argument it does not know is its own usage error (``hpo run``'s usage
    line and exit 2), not handed up to ``hpo``'s parser, whose usage says nothing of the verb's
    flags. Everything after the verb is the verb's: ``hpo`` itself takes none of it."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with ``only`` a verb's parser alone. Registering imports no torch,
    pandas or plotly (a verb's handler imports what it needs), so that ``hpo --help`` is quick
    and a worker process pays only for its own verb's imports."""
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Hyperparameter search and benchmarking for the PyTorch MNIST MLP tutorial.",
        formatter_class=ParagraphFormatter,
        epilog=(
            "examples:\n"
            "  hpo data                      fetch and verify MNIST into the cache\n"
            "  hpo baseline                  the tutorial's 20-epoch run, as written\n"
            "  hpo run --trials 50           tune the recipe (default study and storage)\n"
            "  hpo report                    HTML summary of the default study\n"
        ),
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", parser_class=VerbParser)
    for name in VERBS:
        if only is not None and name != only:
            continue
        importlib.import_module(f"hpo.cli.{name}").register(sub)
    return parser


# What an interrupted command leaves, per verb: only some of them can go on where they stopped.
AFTER_INTERRUPT = {
    "run": "everything finished so far is stored. Rerun the same command to go on",
    # Said whether or not --confirm was given: the stop may come before the handler reads it.
    "report": "the study is as it was, but for the --confirm runs already finished, which are "
    "stored; the report's files are replaced whole or not at all. Rerun the same command to go on",
    "finalize": "the study is as it was (finalize stores its record at the end). Rerun the same "
    "command",
    "baseline": "the baseline run was cut short and is not kept (a run cannot resume); the "
    "previous complete run in its folder, if any, is as it was. Rerun the same command to start "
    "it again",
    "data": "files already verified are kept. Rerun the same command to go on",
}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    verb = words[0].replace("-", "_") if words else ""
    from_env: str | None = None
    args: argparse.Namespace | None = None  # None: stopped before the command began
    try:
        # Inside the try: building the parser imports a verb's modules (Optuna, SQLAlchemy:
        # a few tenths of a second), and a Ctrl-C then is a stop like any other.
        parser = build_parser(verb if verb in VERBS else None)
        args = parser.parse_args(words)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        from_env = device_default(args)
        return int(args.func(args) or 0)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt as exc:
        return _stopped(exc, args, verb)
    except Exception as exc:
        from hpo.device import DeviceError
        from hpo.errors import HpoError

        if (stop := interrupts.stop_behind(exc)) is not None:  # a stop, wrapped by Python
            if stop.__traceback__ is None:  # only pending: an error of its own while stopping
                print(f"hpo: while stopping: {type(exc).__name__}: {exc}", file=sys.stderr)
            return _stopped(stop, args, verb)

        if isinstance(exc, HpoError):  # its message says what is wrong and how to fix it
            if from_env and isinstance(exc, DeviceError):  # no --device was given: say who asked
                return fail(f"{exc} (the device came from {from_env}: unset it)", EXIT_ERROR)
            if _storage_from_env(exc, args):  # said, not "unset it": it may be the right one
                return fail(f"{exc} (the storage came from ${STORAGE_ENV})", EXIT_ERROR)
            return fail(str(exc), EXIT_ERROR)
        if isinstance(exc, OSError) and exc.filename is not None:  # an --out path, say
            return fail(
                f"{exc.strerror or exc}: {exc.filename}. Check that the path is right and that "
                "you may read and write there",
                EXIT_ERROR,
            )
        raise


def _storage_from_env(exc: Exception, args: argparse.Namespace | None) -> bool:
    """Whether ``exc`` is about the storage $HPO_STORAGE names (the --storage default)."""
    storage = sys.modules.get("hpo.storage")  # loaded wherever a StorageError was raised
    return (
        storage is not None
        and isinstance(exc, storage.StorageError)
        and args is not None
        and getattr(args, "worker", None) is None  # a --jobs worker's parent set the variable
        and getattr(args, "storage", None) == os.environ.get(STORAGE_ENV)
    )


def _stopped(exc: KeyboardInterrupt, args: argparse.Namespace | None, verb: str) -> int:
    """Say what a Ctrl-C or SIGTERM left, and its exit code."""
    interrupts.taken()
    ended = isinstance(exc, Terminated)
    if args is None:  # the same line as a stop while hpo.cli itself imports
        signum = signal.SIGTERM if ended else signal.SIGINT
        return fail(loading.stopped_while_starting(signum), loading.exit_code(signum))
    # A handler sets args.after_interrupt once what it said above stops being true.
    nothing = "nothing was changed. Rerun the same command"
    after = getattr(args, "after_interrupt", None) or AFTER_INTERRUPT.get(verb, nothing)
    return fail(
        f"{'terminated (SIGTERM)' if ended else 'interrupted'}; {after}",
        EXIT_TERMINATED if ended else 130,
    )


def console() -> NoReturn:
    """The ``hpo`` command (and ``python -m hpo.cli``, which ``--jobs`` workers run): ``main``,
    then exit without the interpreter's final garbage collection. After torch.compile the heap
    holds some 460,000 tracked objects (dynamo, inductor, sympy); collecting them frees nothing
    the OS would not, and took 1.2-1.5 s at every exit on the 2-core CI machine. Exit handlers
    and module teardown still run: the files hpo writes are closed before ``main`` returns, and
    the storages' connections by ``hpo.storage.close_storages`` at exit.

    SIGTERM is handled as Ctrl-C is (``Terminated``), exiting 143; both by
    ``hpo.interrupts.on_signal``, which remembers a stop in case Python drops its raise. Until
    here, ``hpo.cli.loading`` has them."""
    loading.hand_over(interrupts.on_signal)
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
