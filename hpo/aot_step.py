"""The CPU training step compiled ahead of time (``torch.export`` + AOTInductor), cached on disk.

Why not ``torch.compile`` on the CPU: it traces the step again in every process (importing
dynamo and a warm compile, about 4 s here even with inductor's cache full), which every trial
process of a study pays, and it checks its guards on every call (see the README's Performance
section for the commands that measure both).
AOTInductor builds the same inductor kernels once per machine into a package that a process loads
in milliseconds and calls with no tracing and no guards. The hidden sizes, the batch length and
the dataset size are dynamic dimensions of the one package, as they are of the compiled step.

The package is keyed by everything its code depends on (torch and Python versions, this CPU's
instruction set, the intra-op thread count inductor bakes into its kernels, the precision, and the
source of the step), so a change to any of them builds a new one. A build takes 14-17 s here with
inductor's cache warm, 21-23 s with every cache off; ``hpo run`` and ``hpo baseline`` do it
before their first trial (``prepare``), and ``benchmarks/aot_vs_jit.py`` compares the two steps'
speed. A package that will not load (a damaged file) is built again, once; a build that fails
(no C++ compiler) is not tried again by the same process, whose trials use ``torch.compile``
instead. Each build removes the packages no process has loaded for ``STALE_DAYS`` (those of an
older torch or source), so upgrades do not pile up files of a few MB each.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hpo import fast_step
from hpo.config import Precision
from hpo.data import cache_root
from hpo.device import cpu_model
from hpo.files import exclusive_lock, replacing
from hpo.model import BN_EPS, BN_MOMENTUM

# The smallest size of each dynamic dimension. A batch of one is never trained (BatchNorm) and
# a hidden layer of one unit falls back to torch.compile (see ``fits``).
MIN_SIZE = 2
# A package unused this long is another torch's, source's or thread count's: a build removes it.
STALE_DAYS = 30
_LOADED: dict[str, PackagedStep] = {}
_FAILED: dict[str, str] = {}  # key -> why its package could not be had, in this process
# "key why", set by a ``--jobs`` parent whose ``prepare`` failed: its workers would each pay
# the same failed export again, all at once.
FAILED_ENV = "HPO_AOT_FAILED"


class _Step(torch.nn.Module):
    """``fast_step.gather_step`` as the module ``torch.export`` takes; it mutates its inputs
    (parameters, buffers, statistics, totals) in place, which the package does too. The
    precision is fixed per package: it decides the matmuls' dtypes."""

    def __init__(self, precision: Precision) -> None:
        super().__init__()
        self.precision: Precision = precision

    def forward(
        self,
        x_all: torch.Tensor,
        y_all: torch.Tensor,
        idx: torch.Tensor,
        params: list[torch.Tensor],
        bufs: list[torch.Tensor],
        running: list[torch.Tensor],
        totals: torch.Tensor,
        lr: torch.Tensor,
        momentum: torch.Tensor,
        head: torch.Tensor,
    ) -> torch.Tensor:
        fast_step.gather_step(
            x_all, y_all, idx, params, bufs, running, totals, lr, momentum, head,
            precision=self.precision,
        )  # fmt: skip
        return totals  # export wants an output; the caller reads totals in place anyway


def aot_dir() -> Path:
    return cache_root() / "aot"


def package_key(precision: Precision = "fp32") -> str:
    """What the package's code depends on; a new value for any of them builds a new package."""
    key = f"{_fixed_part()}\nthreads={torch.get_num_threads()}\nprecision={precision}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@functools.cache
def _fixed_part() -> str:
    # Read once per process, so that the key stays the one of the code this process runs even
    # if the files change under it (an edit, a checkout) while it runs.
    return "\n".join([
        torch.__version__,
        f"{sys.version_info.major}.{sys.version_info.minor}",
        platform.machine(),
        cpu_model(),  # one cache shared by machines of several CPU models (an NFS home)
        torch.backends.cpu.get_cpu_capability(),
        f"bn={BN_EPS},{BN_MOMENTUM}",  # constants the step's source imports
        inspect.getsource(fast_step),
        inspect.getsource(_Step),
        inspect.getsource(_build),
        inspect.getsource(_example),
    ])  # fmt: skip


def fits(hidden1: int, hidden2: int) -> bool:
    return min(hidden1, hidden2) >= MIN_SIZE


def package_path(precision: Precision = "fp32") -> Path:
    return aot_dir() / f"train_step-{package_key(precision)}.pt2"


def prepare(
    threads: int | None, log: Callable[[str], None], precision: Precision = "fp32"
) -> dict[str, str]:
    """Build the package for processes of ``threads`` intra-op threads (None: this one's) now,
    saying so, if this machine has none yet: otherwise the first trial spends the build silently,
    its progress line stuck at epoch 0. A failure is said, and left to the trials, which fall
    back. Returns what to add to workers' environment: after a failure, the failure, so that
    they fall back at once rather than each trying the build again."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        path = package_path(precision)
        if not path.exists():
            log(
                f"building the {precision} CPU training step for this machine, once "
                f"(about 15-25 s): {path}"
            )
            load_step(precision)
    except Exception as exc:  # the trials fall back to torch.compile, as they would without this
        why = f"{type(exc).__name__}: {exc}"
        log(f"no CPU step package ({why}"[:200] + "); trials use torch.compile")
        with contextlib.suppress(Exception):  # no key (no source files): nothing to hand on
            return {FAILED_ENV: f"{package_key(precision)} {' '.join(why.split())[:300]}"}
    finally:
        torch.set_num_threads(before)
    return {}


def _failure(key: str) -> str | None:
    """Why ``key``'s package could not be had: in this process, or in the parent that started
    it (``FAILED_ENV``)."""
    inherited, _, why = os.environ.get(FAILED_ENV, "").partition(" ")
    return _FAILED.get(key) or (why if inherited == key else None)


def load_step(precision: Precision = "fp32") -> tuple[PackagedStep, bool]:
    """The packaged step for this process's thread count and ``precision``, built first if this
    machine has none yet; and whether it was built now. Raises whatever export or the build
    raised (no C++ compiler, say): the caller falls back to ``torch.compile``."""
    key = package_key(precision)
    if key in _LOADED:
        return _LOADED[key], False
    failed = _failure(key)
    if failed:  # once per process: every trial would otherwise pay the failed export
        raise RuntimeError(f"the CPU step package could not be built: {failed}")
    path = package_path(precision)
    lock = path.with_name(".lock")  # one for the folder: builds and pruning never overlap
    built = False
    try:
        if not path.exists():
            with exclusive_lock(lock):  # one build per machine and key (Windows: one each)
                if not path.exists():
                    _build(path, precision)
                    built = True
                    _prune(path)
        try:
            step = PackagedStep(path)
        except Exception:
            if built:
                raise
            # A damaged file (a disk error, a partial copy): build it again, once. Workers that
            # found it damaged together queue on the lock: the first rebuilds, the rest load
            # its package rather than each replacing the one just built.
            with exclusive_lock(lock):
                try:
                    step = PackagedStep(path)
                except Exception:
                    path.unlink(missing_ok=True)
                    _build(path, precision)
                    built = True
                    step = PackagedStep(path)
        if not built:
            with contextlib.suppress(OSError):  # a read-only cache still works
                os.utime(path)  # its last use, which ``_prune`` goes by
    except Exception as exc:
        _FAILED[key] = f"{type(exc).__name__}: {exc}"[:300]
        raise
    _LOADED[key] = step
    return step, built


class PackagedStep:
    """The package's step, called like ``fast_step.gather_step``.

    It runs through AOTInductor's C++ loader directly rather than
    ``torch._inductor.aoti_load_package``: that wrapper imports inductor and dynamo in a fresh
    process and parses the package's input spec again on every call. The inputs are the step's
    tensors, flattened in the exported order."""

    N_INPUTS = 3 + 10 + 10 + 4 + 4  # x, y, idx; params; bufs; running; totals, lr, m, head

    def __init__(self, path: Path) -> None:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        from torch.utils import _pytree

        leaves = _pytree.treespec_loads(loader.get_call_spec()[0]).num_leaves
        if leaves != self.N_INPUTS:  # a package this code did not build
            raise RuntimeError(f"{path} takes {leaves} inputs, not {self.N_INPUTS}")
        self._run = loader.boxed_run

    def __call__(
        self,
        x_all: torch.Tensor,
        y_all: torch.Tensor,
        idx: torch.Tensor,
        params: list[torch.Tensor],
        bufs: list[torch.Tensor],
        running: list[torch.Tensor],
        *scalars: torch.Tensor,  # totals, lr, momentum, head
    ) -> None:
        self._run([x_all, y_all, idx, *params, *bufs, *running, *scalars])


def _build(path: Path, precision: Precision) -> None:
    from torch.export import Dim, export

    n, b = Dim("n", min=MIN_SIZE), Dim("batch", min=MIN_SIZE)
    h1, h2 = Dim("hidden1", min=MIN_SIZE), Dim("hidden2", min=MIN_SIZE)
    layer1, layer2 = [{0: h1}] * 4, [{0: h2, 1: h1}, {0: h2}, {0: h2}, {0: h2}]
    layers = [*layer1, *layer2, {1: h2}, None]
    dynamic = ({0: n}, {0: n}, {0: b}, layers, layers, [{0: h1}] * 2 + [{0: h2}] * 2)
    shapes = (*dynamic, None, None, None, None)
    exported = export(_Step(precision), _example(), dynamic_shapes=shapes)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".building-{path.stem}-"
    for stale in path.parent.glob(f"{prefix}*"):  # from a build killed outright (SIGKILL)
        stale.unlink(missing_ok=True)  # safe: the folder's lock is held, so no build is running
    # Inductor writes only to a name ending .pt2. mode=None keeps the package owner-only (0600):
    # it lives in the user's own cache, unlike MNIST, whose --data-dir may be shared.
    with replacing(path, prefix=prefix, suffix=".pt2", mode=None) as tmp:
        torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp))


def _prune(keep: Path) -> None:
    """Remove the packages beside ``keep`` that no process has loaded for ``STALE_DAYS``.
    Called with the folder's lock held, so no build is writing one of them."""
    cutoff = time.time() - STALE_DAYS * 86_400
    # *.lock: the per-key locks of earlier versions, which nothing takes any more.
    for old in [*keep.parent.glob("train_step-*.pt2"), *keep.parent.glob("train_step-*.lock")]:
        with contextlib.suppress(OSError):
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()


def _example() -> tuple[Any, ...]:
    # The tutorial's sizes: inductor picks its kernels' loop splits and threading from these
    # (examples of 512 samples and 48/24 units gave kernels twice as slow at 300/100). Distinct
    # sizes for distinct dimensions: equal ones would let export assume them equal for good.
    n, b, h1, h2 = 50_000, 64, 300, 100
    g = torch.Generator().manual_seed(0)
    shapes = [(h1, 784), (h1,), (h1,), (h1,), (h2, h1), (h2,), (h2,), (h2,), (10, h2), (10,)]
    params = [torch.randn(s, generator=g) for s in shapes]
    return (
        torch.randn(n, 784, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        torch.randint(0, n, (b,), generator=g),
        params,
        [torch.zeros_like(p) for p in params],
        [torch.zeros(h1), torch.ones(h1), torch.zeros(h2), torch.ones(h2)],
        torch.zeros(3, dtype=torch.float64),
        torch.tensor(0.01),
        torch.tensor(0.9),
        torch.tensor(False),
    )
