"""Where an epoch of the tutorial's run spends its time, kernel by kernel, on any device: the
profile that the GPU target (20 epochs in 2 s) needs next.

    python -m benchmarks.profile_epoch [--device cuda] [--epochs 2] [--trace DIR]

Trains the tutorial's configuration on all 60,000 images as ``hpo baseline`` does (the same
``fit``: compiled, CUDA graphs on a GPU) for ``--epochs``, and profiles the last epoch of that
one fit (training and evaluation; the first epoch pays for compiling and capturing). Prints the
wall time per training step, the device kernels per step, the time they are busy per step, and
the kernels that take the most of it. Busy time well below the step's wall time means the step
waits on launches or the host, not on arithmetic. ``--trace`` also writes a Chrome trace
(chrome://tracing, Perfetto) there.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.train import EpochMetrics, fit


def device_events(prof: profile) -> list[tuple[str, float]]:
    """(name, microseconds) for each activity on the accelerator: kernels, copies and fills."""
    out = []
    for event in prof.events():
        if event.device_type != DeviceType.CPU:
            # device_time (torch >= 2.4) is the kernel's own time; cuda_time in older releases
            us = getattr(event, "device_time", None) or getattr(event, "cuda_time", None)
            out.append((event.name, float(us or 0.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--epochs", type=int, default=2, help="profiles the last, at least the second (default 2)"
    )
    parser.add_argument("--trace", type=Path, default=None, help="folder for a Chrome trace")
    args = parser.parse_args()
    device = torch.device(args.device)
    mnist = Mnist.load()
    config = TrainConfig(epochs=max(2, args.epochs))
    steps = math.ceil(len(mnist.arrays.train_labels) / config.batch_size)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities)
    began: list[float] = []

    def on_epoch(m: EpochMetrics) -> None:
        # Within the one fit: a second fit would compile and capture again inside the window.
        if m.epoch == config.epochs - 2:  # the next epoch is the last
            prof.start()  # its own start-up (about a second) is kept out of the window
            began.append(time.perf_counter())
        elif m.epoch == config.epochs - 1:
            began.append(time.perf_counter() - began[0])  # before stop(), which collects events
            prof.stop()

    if device.type == "cuda":
        # The fit captures its graphs before the profiler first starts, which can hang or fault
        # (pytorch#75504) unless the profiler has set CUPTI up beforehand, as this does.
        torch.profiler._utils._init_for_cuda_graphs()
    result = fit(config, mnist, device, on_epoch, full=True)
    wall = began[-1]
    epoch = result.final
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name})")
    print(f"one epoch under the profiler: {wall:.3f} s (train {epoch.train_seconds:.3f} s, "
          f"eval {epoch.eval_seconds:.3f} s); {result.step}")  # fmt: skip
    print(f"train step: {epoch.train_seconds / steps * 1e6:.1f} us wall ({steps} steps)")
    kernels = device_events(prof)
    if kernels:
        busy = sum(us for _, us in kernels)
        print(f"device activities (kernels, copies, fills): {len(kernels)} in the epoch "
              f"({len(kernels) / steps:.1f} per step, evaluation included), busy "
              f"{busy / steps:.1f} us per step")  # fmt: skip
        totals: dict[str, list[float]] = {}
        for name, us in kernels:
            totals.setdefault(name, []).append(us)
        top = sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:20]
        print("| activity | calls | total us | us per step |")
        print("| --- | --- | --- | --- |")
        for name, times in top:
            print(f"| {name[:90]} | {len(times)} | {sum(times):.0f} | {sum(times) / steps:.2f} |")
    else:
        print("no device kernels recorded (a CPU run: see the table of operators instead)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
        trace = args.trace / f"epoch-{device.type}.json.gz"  # gzipped: tens of MB on a GPU
        prof.export_chrome_trace(str(trace))
        print(f"trace: {trace}")


if __name__ == "__main__":
    main()
