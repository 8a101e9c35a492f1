"""CUDA graphs: one replay launches a whole chunk of training steps.

Why: on a GPU the tutorial's step is a few dozen tiny kernels, and launched one at a time from
Python the GPU mostly waits for the next launch (measured on an H100: about 2.2 s per epoch eager;
0.18 s with one graph per step, the batch gathers and the Python loop still outside it).
Capturing a chunk of steps once per ``fit`` (``hpo.epoch_steps``) turns dozens of steps into one
launch. Everything that changes between replays (the batch indices, the lr, the running totals)
lives in tensors that the graph reads in place and the caller rewrites before each replay; the
model state is updated in place, so the graph's addresses stay valid for the whole fit.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

import torch

K = TypeVar("K", bound=Hashable)

GRAPHS_ENV = "HPO_CUDA_GRAPHS"


def graphs_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def use_graph(device: torch.device, requested: bool | None) -> bool:
    """``None`` means: wherever the device supports it, unless ``HPO_CUDA_GRAPHS=0`` (the way
    out for a driver that misbehaves under graphs; workers inherit it). Asking for one elsewhere
    is an error, not a silent fallback, so that a benchmark never reports an ungraphed run as
    graphed."""
    if requested is None:
        return graphs_available(device) and os.environ.get(GRAPHS_ENV, "1") != "0"
    if requested and not graphs_available(device):
        raise ValueError(f"CUDA graphs need a CUDA device, not {device}; use graph=None or False")
    return requested


def capture(
    runs: dict[K, Callable[[], None]], warm_up: Callable[[], None], device: torch.device
) -> dict[K, Callable[[], None]]:
    """Capture each of ``runs`` (which must not sync with the host) into its own graph; returns
    their replays under the same keys.

    ``warm_up`` must touch the same kernels on throwaway tensors first, once, on a side stream,
    as CUDA graphs require: cuBLAS workspaces, lazy module loading and compilation happen there,
    never inside a capture. Capturing records work without executing it, so the tensors the
    runs update are not changed until the first replay.
    """
    with torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            warm_up()
        torch.cuda.current_stream(device).wait_stream(side)
        replays = {}
        # Captured on this device's own stream: torch.cuda.graph's default capture stream is
        # made once per process, on the device current then (cuda:0), and a capture there of
        # work queued on cuda:1 records nothing. The outer context also puts the current stream
        # back if a capture fails at its end (torch.cuda.graph then skips its own restore).
        with torch.cuda.stream(side), relayed_warnings(device):
            for key, run in runs.items():
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=side):
                    run()
                replays[key] = graph.replay
    return replays


@contextlib.contextmanager
def relayed_warnings(device: torch.device) -> Iterator[None]:
    """Warnings raised while capturing are said once it ends, also when a capture raised (they
    are often its why). An empty graph, which PyTorch only warns about (its replays do nothing),
    is an error."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recording:
            warnings.simplefilter("always")
            caught = recording
            yield
    finally:
        empty = [w for w in caught if "graph is empty" in str(w.message).lower()]
        for w in caught:
            if w not in empty:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if empty:
        raise RuntimeError(f"a CUDA graph captured nothing on {device}: {empty[0].message}")


def maybe_graph(
    runs: dict[K, Callable[[], None]],
    warm_up: Callable[[], None],
    device: torch.device,
    requested: bool | None,
) -> tuple[dict[K, Callable[[], None]], bool, float]:
    """``runs`` themselves or their graphs' replays, whether they are graphs, and the seconds
    capturing took. Where graphs were only wanted by default, a capture that fails (a driver or
    op that cannot be captured) warns and falls back to running the same steps one by one."""
    if not use_graph(device, requested):
        return runs, False, 0.0
    start = time.perf_counter()
    try:
        replays = capture(runs, warm_up, device)
    except Exception as exc:
        if requested:
            raise
        warnings.warn(f"CUDA graph capture failed, running steps one by one: {exc}", stacklevel=2)
        return runs, False, 0.0
    return replays, True, time.perf_counter() - start
