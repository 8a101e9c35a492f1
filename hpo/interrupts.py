"""Ctrl-C and SIGTERM: raised where the process is, raised again where Python dropped the
first raise, and held off from blocks that must not stop half-way."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import NoReturn

from hpo.errors import causes


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, systemd, Slurm at a job's time limit), raised where
    the process is so that it stops as Ctrl-C stops it: the running trial failed and queued
    again, everything finished kept."""


# The stop a handler raised and nobody has caught yet (a signal number). A handler runs wherever
# the main thread is, and an exception raised inside a garbage-collection callback (a weakref's)
# is printed and dropped by Python: the stop would be lost, and a --jobs worker, which ignores
# further signals once stopping, would train on to the study's end. ``raise_pending`` raises it
# again at the search loop's top, before every epoch of any training (``hpo.train``) and in the
# --jobs parent's wait.
_pending: int | None = None


def stop(signum: int) -> NoReturn:
    """Raise the stop ``signum`` asks for (Terminated for SIGTERM), remembering it."""
    global _pending
    _pending = signum
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def on_signal(signum: int, frame: object) -> NoReturn:
    """A SIGINT and SIGTERM handler: ``stop``."""
    stop(signum)


def raise_pending() -> None:
    """Raise a stop whose first raise was dropped; nothing when none is pending."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def stop_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The stop that ``exc`` stands for: a Ctrl-C or SIGTERM in its chain of causes (Python
    wraps one raised inside ``__set_name__`` in a RuntimeError, as a stop in the middle of
    importing matplotlib can be), or the stop still pending; None for a genuine error."""
    raised = [e for e in causes(exc) if isinstance(e, KeyboardInterrupt)]
    if raised:
        return raised[0]
    if _pending is None:
        return None
    return Terminated() if _pending == signal.SIGTERM else KeyboardInterrupt()


def taken() -> None:
    """Said by code that catches a stop and goes on (the parent of --jobs workers, the CLI's
    exit): the stop arrived, so it is no longer pending."""
    global _pending
    _pending = None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM are ignored for the block: a few milliseconds' bookkeeping that must
    not stop halfway (a finished baseline's renames; an interrupted trial's re-queue). Only the
    main thread can set handlers; elsewhere, and where a handler was not set from Python, the
    block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if any(handler is None for handler in held.values()):
        yield
        return
    for sig in held:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
