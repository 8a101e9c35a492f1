"""The ``hpo`` command's first moments: imported before anything else of ``hpo.cli``, so that a
Ctrl-C or SIGTERM while the process is still importing ends it with one line and 130 / 143.

Python's own SIGINT handler raises KeyboardInterrupt inside whichever import is running, and
nothing catches it before ``main`` does: a traceback of importlib's frames. SIGTERM's default
ends the process without a word. ``hand_over`` passes the stops to ``hpo.interrupts`` once
``main`` is about to run and catches them itself.

Only a process started as the command (its console script, or ``python -m hpo.cli`` as --jobs
starts its workers) is given these handlers: a program that imports hpo.cli (a test run) keeps
its own Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

# What each stop's handler is where nobody changed it; a stop set to be ignored (a background
# job's SIGINT, say) stays ignored.
_DEFAULTS: dict[signal.Signals, Any] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
}


def exit_code(signum: int) -> int:
    """What a shell reports for a process the signal ended: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def stopped_while_starting(signum: int) -> str:
    """What the command says when stopped before it began: it has changed nothing yet."""
    said = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    return f"{said} while starting; nothing was changed. Rerun the same command"


def _stop_while_starting(signum: int, frame: object) -> NoReturn:
    # os.write and os._exit: the handler may run inside a print to stderr (print would refuse
    # the reentrant call) and nothing is open yet that exit handlers would need to close.
    os.write(2, f"hpo: error: {stopped_while_starting(signum)}\n".encode())
    os._exit(exit_code(signum))


def started_as_command() -> bool:
    """Whether this process is the ``hpo`` command, not a program that imports hpo.cli."""
    if os.path.basename(sys.argv[0]) == "hpo":  # the console script
        return True
    argv = sys.orig_argv
    return "-m" in argv and argv[argv.index("-m") + 1 :][:1] == ["hpo.cli"]


def hand_over(handler: Callable[[int, Any], Any]) -> None:
    """``handler`` takes each stop this module or Python's default handles (not one set to be
    ignored, nor one another handler was given)."""
    for sig, default in _DEFAULTS.items():
        if signal.getsignal(sig) in (default, _stop_while_starting):
            signal.signal(sig, handler)


if started_as_command():
    hand_over(_stop_while_starting)
