"""The training step ``fit`` runs: eager, compiled ahead of time (the CPU's package,
``hpo.aot_step``) or by ``torch.compile``, whichever the device and the machine allow, falling
back to the next with a warning said once per process."""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config as fx_config

from hpo.aot_step import fits, load_step
from hpo.config import Precision, TrainConfig
from hpo.device import synchronize
from hpo.fast_step import FlatState, Step, gather_step


def use_compile(device: torch.device, requested: bool | None) -> bool:
    if requested is not None:
        return requested
    # MPS support in inductor is partial; elsewhere compiling pays for itself within an epoch.
    return device.type in ("cpu", "cuda")


_COMPILED: dict[tuple[str, str], Step] = {}
# Device types whose compiled step is the ahead-of-time package (hpo.aot_step) rather than
# torch.compile: the CPU. On a GPU the compiled step is captured into CUDA graphs, which
# torch.compile's step has been measured and tested with.
AHEAD_OF_TIME: tuple[str, ...] = ("cpu",)


def ahead_of_time(device: torch.device, config: TrainConfig) -> bool:
    """Whether ``config`` on ``device`` takes the ahead-of-time package, where compiled."""
    return device.type in AHEAD_OF_TIME and fits(config.hidden1, config.hidden2)


# Inductor options per device type, read at the first compile (benchmarks/gpu_baseline.py
# compares them); none by default.
INDUCTOR_OPTIONS: dict[str, dict[str, Any]] = {}


def eager_step(precision: Precision) -> Step:
    return functools.partial(gather_step, precision=precision)


def compiled_step(device: torch.device, precision: Precision) -> Step:
    """One compiled step per device type and precision per process; dynamic shapes so that
    every hidden size a study samples reuses it instead of recompiling (~5-20 s each here)."""
    key = (device.type, precision)
    if key not in _COMPILED:
        _COMPILED[key] = _without_duck_shapes(
            torch.compile(
                eager_step(precision),
                dynamic=True,
                fullgraph=True,
                options=INDUCTOR_OPTIONS.get(device.type),
            )
        )
    return _COMPILED[key]


def _without_duck_shapes(step: Step) -> Step:
    """``step`` traced with a symbol per size. By default dynamo gives sizes that are equal when
    it traces one symbol ("duck shapes"), so a first trial with hidden1 == hidden2, or a size
    equal to a batch's length, compiled a step that only fits such trials, and the next other one
    compiled again (5-20 s).
    The setting is read when a trace starts, so it is set around each call (about 5 us) rather
    than for the whole process."""

    @functools.wraps(step)
    def call(*args: Any) -> None:
        before = fx_config.use_duck_shape
        fx_config.use_duck_shape = False
        try:
            step(*args)
        finally:
            fx_config.use_duck_shape = before

    return call


def prepare_step(
    device: torch.device,
    want_compiled: bool,
    warm_up: Callable[[Step], None],
    precision: Precision = "fp32",
    *,
    aot: bool = False,
) -> tuple[Step, bool, float, bool]:
    """The step function, compiled where asked and possible; whether it is compiled, the
    seconds compiling (or loading the package) took, and whether it is the ahead-of-time one.

    ``aot``: try the package from ``hpo.aot_step`` first. Otherwise compiling happens here, in
    ``warm_up`` (``scratch_steps``: throwaway copies of the state, once per batch length), so
    that no epoch's timing includes it and the real state sees exactly the steps of training."""
    if not want_compiled:
        return eager_step(precision), False, 0.0, False
    start = time.perf_counter()
    if aot:
        try:
            packaged, _ = load_step(precision)
            return packaged, True, time.perf_counter() - start, True
        except Exception as exc:  # export or the build failed: torch.compile may still work
            _warn_once("aot", f"no ahead-of-time CPU step ({_why(exc)}); using torch.compile")
            start = time.perf_counter()
    try:
        step = compiled_step(device, precision)
        warm_up(step)
        synchronize(device)
    except Exception as exc:  # no C++ compiler or an unsupported backend: same math, eager
        _warn_once(
            f"compile-{device.type}",
            f"torch.compile failed on {device.type} ({_why(exc)}); training eagerly, several "
            "times slower (--no-compile skips the attempt)",
        )
        return eager_step(precision), False, 0.0, False
    return step, True, time.perf_counter() - start, False


_WARNED: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    """Say once per process why a step is slower than it could be: every trial would repeat it."""
    if what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _why(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]


def scratch_steps(
    step: Step,
    state: FlatState,
    x: torch.Tensor,
    y: torch.Tensor,
    momentum: torch.Tensor,
    head: torch.Tensor,
    lengths: list[int],
) -> None:
    """One step per batch length on copies of ``state``: compiles and warms up, changes nothing."""
    scratch = FlatState(
        [p.clone() for p in state.params],
        [b.clone() for b in state.bufs],
        [r.clone() for r in state.running],
    )
    for length in lengths:
        step(
            x,
            y,
            torch.arange(min(length, len(y)), device=x.device),
            scratch.params,
            scratch.bufs,
            scratch.running,
            torch.zeros(3, device=x.device, dtype=torch.float64),
            torch.zeros((), device=x.device),
            momentum,
            head,
        )
