"""The project's own error type: its message names the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterator


class HpoError(RuntimeError):
    """An error the user can act on; the CLI prints its message and exits 1."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, and so on down the chain."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__
