"""Where one compiled training step's time goes, for given hidden sizes: the matmuls' share and
their speed against the work they do.

    python -m benchmarks.profile_step [HIDDEN1 HIDDEN2]     (default: 710 380)

Prints the step's time, the time inside matmul kernels (aten::mm/addmm) and the GFLOP/s those
reach (forward of three layers, weight gradients of three, input gradients of two), to compare
with the machine's peak.

The step profiled is ``torch.compile``'s, not the ahead-of-time package that training uses on the
CPU: the kernels are the same (``tests/test_aot_step.py``), but the package calls its matmuls
below the profiler, which then records none of them. ``torch.compile``'s step also pays for
dynamo's guards and wrappers (``benchmarks/aot_vs_jit.py`` compares the two), so the matmuls'
share of the package's step is somewhat higher than printed.
"""

from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from hpo.config import TrainConfig
from hpo.fast_step import FlatState
from hpo.mnist import Mnist
from hpo.model import build_model
from hpo.step_compile import prepare_step, scratch_steps

BATCH, STEPS = 64, 200


def matmul_flops(h1: int, h2: int) -> float:
    forward = 784 * h1 + h1 * h2 + h2 * 10
    weight_grads = forward
    input_grads = h1 * h2 + h2 * 10  # the first layer needs no gradient for its input
    return 2.0 * BATCH * (forward + weight_grads + input_grads)


def main(h1: int, h2: int) -> None:
    device = torch.device("cpu")
    config = TrainConfig(head="logits", hidden1=h1, hidden2=h2)
    train = Mnist.load().tensors(device, full=False).train
    state = FlatState.from_module(build_model(config), device)
    momentum = torch.tensor(config.momentum)
    step, compiled, _, _ = prepare_step(
        device,
        True,
        lambda s: scratch_steps(s, state, train.x, train.y, momentum, torch.tensor(False), [BATCH]),
        aot=False,  # the package's matmuls are invisible to the profiler (see above)
    )
    idx = torch.randperm(len(train.y))[:BATCH]
    totals = torch.zeros(3, dtype=torch.float64)
    args = (train.x, train.y, idx, state.params, state.bufs, state.running, totals,
            torch.tensor(0.01), momentum, torch.tensor(False))  # fmt: skip
    for _ in range(20):
        step(*args)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        # Timed inside the profiler: its start and stop (about a second) are not the steps'.
        began = time.perf_counter()
        for _ in range(STEPS):
            step(*args)
        per_step = (time.perf_counter() - began) / STEPS
    matmul_us = sum(
        e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm")
    )
    if matmul_us == 0:
        raise SystemExit("the profile holds no aten::mm/addmm: nothing to divide the step by")
    matmul_s = matmul_us / 1e6 / STEPS
    print(f"{h1}/{h2}, compiled={compiled}: {per_step * 1e3:.2f} ms per step (profiled)")
    print(f"matmuls: {matmul_s * 1e3:.2f} ms ({matmul_s / per_step:.0%} of the step), "
          f"{matmul_flops(h1, h2) / matmul_s / 1e9:.0f} GFLOP/s")  # fmt: skip


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print("python -m benchmarks.profile_step [HIDDEN1 HIDDEN2]  (default 710 380)")
        sys.exit(0)
    sizes = [int(a) for a in sys.argv[1:3]] or [710, 380]
    main(*sizes)
