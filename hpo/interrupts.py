"""Blocks that a second Ctrl-C or a SIGTERM must not cut short."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


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
