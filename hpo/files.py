"""Files that other processes read or write at the same time: the MNIST cache, the compiled
step's packages, the report and its model cache.

``replacing`` writes a file whole or not at all; ``exclusive_lock`` lets one process at a time
do what the others would race to do (fetch MNIST, build a package). Standard library only, so
any module may use them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(
    path: Path, *, mode: int | None = 0o644, prefix: str | None = None, suffix: str = ".tmp"
) -> Iterator[Path]:
    """A temporary file beside ``path`` (same folder, so same file system) for the block to
    write; when the block ends, it replaces ``path`` in one ``os.replace``. A reader, or a
    process killed while writing, sees the old file or none, never half of the new one.

    If the block raises, the temporary file is removed and ``path`` is left as it was. A
    SIGKILL runs no cleanup: its temporary file stays, named ``prefix`` + random + ``suffix``
    (``prefix`` defaults to ``.<name>.``, hidden) for a caller that wants to clear such leftovers.

    ``mode``: the new file's permissions. ``mkstemp`` makes 0600, and what is written here is
    shared like the files it replaces, hence 0644 by default; None keeps 0600.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix
        )
    except OSError as exc:
        # A file where a folder must be: mkdir says "File exists", naming the path asked for.
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise NotADirectoryError(
                errno.ENOTDIR, "a file is in the way, where a folder must be", str(blocker)
            ) from None
        raise _about(exc, path) from None
    os.close(fd)  # the block writes by path: some writers (torch.save, inductor) take only one
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt too: a Ctrl-C leaves no temporary file
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename == str(tmp):
            raise _about(exc, path) from exc
        raise


def _about(exc: OSError, path: Path) -> OSError:
    """``exc`` about ``path``, the file the caller named, rather than the temporary file (or a
    folder on the way to it): an error message should name what the user asked for."""
    return OSError(exc.errno, exc.strerror, str(path))  # the same subclass, from errno


@contextlib.contextmanager
def exclusive_lock(
    lock: Path, *, make_folder: bool = True, best_effort: bool = False
) -> Iterator[None]:
    """An exclusive ``flock`` on the file ``lock`` across processes, held for the block; the
    kernel drops it if its holder dies. Where there is no ``fcntl`` (Windows), no lock.

    ``make_folder``: create ``lock``'s folder first. ``best_effort``: where the lock file cannot
    be opened (a read-only folder, or one absent with ``make_folder`` off), run the block
    without a lock rather than raise the ``OSError``.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        if make_folder:
            lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")  # "a": never truncates, whoever else has it open
    except OSError:
        if not best_effort:
            raise
        handle = None
    if handle is None:  # outside the except: the block's own errors chain to nothing of ours
        yield
        return
    with handle:  # closing the file releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


_KINDS = (
    (b"SQLite format 3\0", "an SQLite database"),
    (b"{", "a JSON file"),
    (b"[", "a JSON file"),
)


def foreign(path: Path, *heads: bytes) -> str | None:
    """What ``path`` holds ("a folder", "an SQLite database", "a JSON file", "a file") where it
    exists and is not a file starting with one of ``heads`` (compared without case, after any
    leading blank); None where it is absent or does start so."""
    try:
        is_dir = path.is_dir()
        exists = path.exists()
    except OSError:  # a folder on the way that cannot be searched: the writer's to say
        return None
    if is_dir:
        return "a folder"
    if not exists:  # absent (a file where a folder must be is also the writer's to say)
        return None
    try:
        with path.open("rb") as f:
            start = f.read(64)
    except OSError:  # unreadable: what it is cannot be told, and it is not to be replaced
        return "a file hpo cannot read"
    if not start.strip() or any(start.lstrip().lower().startswith(h.lower()) for h in heads):
        return None  # empty (nothing to lose), or what the command writes
    return next((kind for magic, kind in _KINDS if start.lstrip().startswith(magic)), "a file")
