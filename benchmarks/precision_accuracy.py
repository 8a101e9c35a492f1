"""Does bf16 change what a configuration reaches, and what does it buy? In one process: each
configuration trained for 20 epochs over several seeds in fp32 and in bf16 (validation split,
the same seeds and batches for both), then one of its matmuls timed in both dtypes.

    python -m benchmarks.precision_accuracy [--seeds 5] [--epochs 20] [CONFIG ...]

CONFIG: ``baseline`` (the tutorial's) and/or ``wide`` (the default study's fp32 winner, 710/380);
both by default. Prints each run's final validation accuracy, each side's mean and standard
deviation, Welch's 95% interval for bf16 - fp32, and one thread's microseconds for a batch's
first-layer matmul. The README's "Precision" table comes from this (about 10 minutes here).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from hpo.config import PRECISIONS, TrainConfig
from hpo.mnist import Mnist
from hpo.report.stats import sample_of, welch_interval
from hpo.train import fit

CONFIGS = {
    "baseline": TrainConfig(),
    "wide": TrainConfig(
        lr=0.155, momentum=0.70, hidden1=710, hidden2=380, schedule="cosine", head="logits"
    ),
}


def accuracies(config: TrainConfig, seeds: int, mnist: Mnist) -> dict[str, list[float]]:
    cpu = torch.device("cpu")
    out: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for seed in range(seeds):
        for precision in PRECISIONS:
            result = fit(dataclasses.replace(config, seed=seed, precision=precision), mnist, cpu)
            out[precision].append(result.final.eval_acc * 100)
            print(f"  seed {seed} {precision}: {out[precision][-1]:.2f}%", flush=True)
    return out


def matmul_us(hidden1: int, dtype: torch.dtype, calls: int = 300) -> float:
    """One thread's time for a batch of 64 through the first layer (64 x 784 x hidden1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(64, 784, generator=g).to(dtype)
        b = torch.randn(784, hidden1, generator=g).to(dtype)
        for _ in range(20):
            a @ b
        began = time.perf_counter()
        for _ in range(calls):
            a @ b
        return (time.perf_counter() - began) / calls * 1e6
    finally:
        torch.set_num_threads(before)


def main(names: list[str], seeds: int, epochs: int) -> None:
    mnist = Mnist.load()
    for name in names:
        config = dataclasses.replace(CONFIGS[name], epochs=epochs)
        print(f"{name}: {config.hidden1}/{config.hidden2}, {epochs} epochs, seeds 0-{seeds - 1}")
        acc = accuracies(config, seeds, mnist)
        for precision, values in acc.items():
            s = sample_of(values)
            print(
                f"  {precision}: mean {s.mean:.2f}% sd {s.std:.2f} "
                f"({min(values):.2f}-{max(values):.2f})"
            )
        diff = welch_interval(acc["bf16"], acc["fp32"])
        if diff is not None:
            interval = f"95% [{diff.low:+.3f}, {diff.high:+.3f}]"
            print(f"  bf16 - fp32: {diff.diff:+.3f} points, {interval}")
        fp32, bf16 = (matmul_us(config.hidden1, d) for d in (torch.float32, torch.bfloat16))
        shape = f"64x784x{config.hidden1}"
        print(f"  {shape} matmul, one thread: fp32 {fp32:.0f} us, bf16 {bf16:.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help=", ".join(CONFIGS))
    args = parser.parse_args()
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    main(args.configs or list(CONFIGS), args.seeds, args.epochs)
