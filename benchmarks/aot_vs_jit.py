"""The CPU step compiled ahead of time against ``torch.compile``'s, alternately in one process:
seconds for one training epoch's steps (the 50,000 images of the validation split's training
side, batches of 64) per hidden sizes.

    python -m benchmarks.aot_vs_jit [--threads N] [--rounds R] [--precision P] [--steps S]
                                    [H1xH2 ...]

Both run the same kernels (``tests/test_aot_step.py`` checks the results are bit-identical); what
differs is the call: the package runs with no guards and no dynamo wrappers. Alternating in one
process keeps the machine's slow phases from favouring either side. ``--steps`` times only an
epoch's first S steps (a smoke test's run; the README's figures are whole epochs).
"""

from __future__ import annotations

import argparse
import time

import torch

from hpo.aot_step import load_step
from hpo.config import PRECISIONS, Precision, TrainConfig
from hpo.fast_step import FlatState
from hpo.mnist import Mnist
from hpo.model import build_model
from hpo.step_compile import compiled_step, scratch_steps

BATCH = 64


def main(
    sizes: list[tuple[int, int]],
    rounds: int,
    precision: Precision = "fp32",
    steps: int | None = None,
) -> None:
    cpu = torch.device("cpu")
    packaged, _ = load_step(precision)
    jit = compiled_step(cpu, precision)
    train = Mnist.load().tensors(cpu, full=False).train
    n = len(train.y)
    lr, momentum, head = torch.tensor(0.01), torch.tensor(0.9), torch.tensor(False)
    epoch = n // BATCH
    steps = epoch if steps is None else min(steps, epoch)
    span = f"per epoch of {epoch} steps" if steps == epoch else f"for {steps} of {epoch} steps"
    print(f"threads {torch.get_num_threads()}; seconds {span}")
    for h1, h2 in sizes:
        state = FlatState.from_module(build_model(TrainConfig(hidden1=h1, hidden2=h2)), cpu)
        totals = torch.zeros(3, dtype=torch.float64)
        scratch_steps(jit, state, train.x, train.y, momentum, head, [BATCH])  # compile
        times: dict[str, list[float]] = {"ahead of time": [], "torch.compile": []}
        for _ in range(rounds):
            for name, step in (("ahead of time", packaged), ("torch.compile", jit)):
                order = torch.randperm(n)
                began = time.perf_counter()
                for start in range(0, steps * BATCH, BATCH):
                    step(train.x, train.y, order[start : start + BATCH], state.params,
                         state.bufs, state.running, totals, lr, momentum, head)  # fmt: skip
                times[name].append(time.perf_counter() - began)
        cells = "; ".join(f"{k} {', '.join(f'{t:.3f}' for t in v)}" for k, v in times.items())
        print(f"{h1}x{h2}: {cells}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--steps", type=int, default=None, help="an epoch's first S steps only")
    parser.add_argument("sizes", nargs="*", default=["300x100"])
    args = parser.parse_args()
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # before the package is chosen: its key has it
    pairs = [size.split("x") for size in args.sizes]
    main([(int(h1), int(h2)) for h1, h2 in pairs], args.rounds, args.precision, args.steps)
