"""Device resolution and honest timing: the device is chosen once and passed down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


class DeviceError(RuntimeError):
    """A device was asked for that this machine does not have."""


def _available_accelerator() -> torch.device | None:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks an accelerator when present; an explicit absent device is an error."""
    name = name.strip().lower()
    if name == "auto":
        return _available_accelerator() or torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name} was asked for, but no CUDA GPU is visible to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                "use --device cpu or --device auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--device {name} was asked for, but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1})"
            )
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(
                "--device mps was asked for, but Apple's MPS backend is not available here; "
                "use --device cpu or --device auto"
            )
        return device
    raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def describe(device: torch.device) -> str:
    """A human name for the hardware behind ``device``, kept with every result."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    import platform

    return f"CPU {platform.machine()} x{torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    # A CPU-GPU sync point: only at timing boundaries, never inside the training loop.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextmanager
def timed(device: torch.device) -> Iterator[Callable[[], float]]:
    """Wall time of the block with the device drained at both ends; call the yielded fn after."""
    synchronize(device)
    start = time.perf_counter()
    box: list[float] = []
    try:
        yield lambda: box[0]
    finally:
        synchronize(device)
        box.append(time.perf_counter() - start)
