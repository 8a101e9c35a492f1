"""Device resolution, worker placement and honest timing: the device is chosen once and passed
down."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from hpo.config import Precision, PrecisionChoice
from hpo.errors import HpoError


class DeviceError(HpoError):
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
    return f"{cpu_model()} x{torch.get_num_threads()} threads"


def cpu_model() -> str:
    """The CPU's model name as Linux reports it, else what the platform module says: the
    compiled step and precision "auto" depend on its instruction set."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 arithmetic units: a CPU with AVX512-BF16 or AMX, a GPU
    from Ampere on. Elsewhere bfloat16 matmuls are converted and can be slower than fp32."""
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence getattr
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return False  # MPS: not known to gain


def resolve_precision(precision: PrecisionChoice, device: torch.device) -> Precision:
    """``auto`` -> bf16 on a CPU with native bfloat16, where these networks' matmuls are the time
    (1.4-1.7x faster epochs on a 2-core Zen 4), else fp32: a GPU trains them bound by kernel
    launches, not matmuls."""
    if precision == "auto":
        return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"
    return precision


def slow_bf16_note(device: torch.device, precision: PrecisionChoice) -> str | None:
    """Why an explicit bf16 may be slow on ``device``, or None."""
    if precision != "bf16" or device.type not in ("cpu", "cuda") or native_bf16(device):
        return None
    what = "this CPU has neither AVX512-BF16 nor AMX"
    if device.type == "cuda":
        what = f"{torch.cuda.get_device_name(device)} predates bfloat16 tensor cores (Ampere)"
    # Measured by capping oneDNN's instruction set: 1.5x (AVX-512) to 30x (AVX2) slower.
    return (
        f"precision bf16: {what}, so its matmuls are emulated, several times slower than fp32; "
        "use --precision auto"
    )


def synchronize(device: torch.device) -> None:
    # A CPU-GPU sync point: only at timing boundaries, never inside the training loop.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------- parallel workers


@dataclass(frozen=True)
class WorkerPlan:
    """How ``hpo run --jobs`` spreads its workers: one device per worker, and torch's threads."""

    devices: tuple[str, ...]
    threads: int | None  # intra-op threads per worker; None: leave torch's default alone

    @property
    def jobs(self) -> int:
        return len(self.devices)


def plan_workers(
    device: str, jobs: int | None, *, cuda_count: int, cpu_count: int, mps: bool = False
) -> WorkerPlan:
    """The workers for ``--device`` and ``--jobs`` (None: not given) on a machine with
    ``cuda_count`` GPUs and ``cpu_count`` usable CPUs. Pure, so every combination is testable
    without the hardware; the README's table lists them.

    auto/cuda with GPUs: one worker per GPU by default, worker i pinned to cuda:(i mod count).
    cuda:K: every worker on GPU K. cpu, mps, or auto without a GPU: one worker by default.
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1 (got {jobs})")
    name = device.strip().lower()
    if name in ("auto", "cuda") and cuda_count > 0:
        n = jobs or cuda_count
        devices = tuple(f"cuda:{i % cuda_count}" for i in range(n))
    elif name == "cuda" or name.startswith("cuda:"):
        index = 0 if name == "cuda" else _cuda_index(name)
        if index >= cuda_count:
            have = f"only {cuda_count} CUDA device(s) exist" if cuda_count else "no CUDA GPU"
            raise DeviceError(
                f"--device {name} was asked for, but {have} is visible here; use --device cpu "
                "or --device auto"
            )
        devices = (name,) * (jobs or 1)
    elif name == "auto":
        devices = ("mps" if mps else "cpu",) * (jobs or 1)
    else:
        devices = (name,) * (jobs or 1)
    return WorkerPlan(devices, worker_threads(len(devices), cpu_count))


def crowded_note(plan: WorkerPlan, cpu_count: int) -> str | None:
    """A note when more workers train on the CPU than there are CPUs: each has one thread, and
    they take turns on the cores, so every trial takes longer for no more throughput."""
    on_cpu = sum(d == "cpu" for d in plan.devices)
    if on_cpu <= max(cpu_count, 1):
        return None
    return (
        f"{on_cpu} workers on {cpu_count} usable CPU(s) take turns on them: each trial runs "
        f"slower and the study no faster; --jobs {cpu_count} uses every CPU"
    )


def _cuda_index(name: str) -> int:
    try:
        return int(name.partition(":")[2])
    except ValueError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None


def worker_threads(jobs: int, cpu_count: int) -> int | None:
    """torch intra-op threads per worker: the CPUs split evenly, at least one each.

    Measured on a 2-core CPU: two single-threaded workers train about 1.5x the model-epochs per
    second of one worker using both cores, while workers whose OpenMP threads add up to more than
    the cores (each taking torch's default of all of them) run epochs 5-70x slower. One worker
    keeps torch's default."""
    return None if jobs == 1 else max(1, cpu_count // jobs)


def usable_cpus() -> int:
    # The CPUs this process may run on (a container's or taskset's share), not the machine's.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    """Apply a worker's thread share; call before any torch work in the process."""
    if threads is None:
        return
    torch.set_num_threads(threads)
    # Inter-op threads can only be set before the first inter-op work; a worker does no more
    # than one thing at a time, so one is enough.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def visible_cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
