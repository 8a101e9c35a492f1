"""How steady is this machine? One process trains the tutorial's config for one epoch N times
(full set, compiled tensor path, compiling excluded) and prints each epoch's training seconds.

    python -m benchmarks.repeat_epoch [N] [--threads T [T ...]]

On a shared virtual machine the compiled path's speed can halve for minutes at a time; run this
before trusting a ratio from ``pytest benchmarks/``. With ``--threads``, the N epochs run once
per thread count, the counts taking turns (2 1 2 1 ...), one line each: on this project's VM a
slow phase halved a two-thread epoch and left a one-thread one nearly alone.
"""

from __future__ import annotations

import argparse

import torch

from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.train import fit


def main(rounds: int, threads: tuple[int, ...] = ()) -> dict[int, list[float]]:
    """Training seconds per epoch, per thread count (0: PyTorch's own count, untouched)."""
    mnist, device = Mnist.load(), torch.device("cpu")
    config = TrainConfig(epochs=1)
    seconds: dict[int, list[float]] = {t: [] for t in threads or (0,)}
    for count in seconds:  # compile (or load) each thread count's step outside the timings
        _set_threads(count)
        fit(config, mnist, device, full=True)
    for _ in range(rounds):
        for count, times in seconds.items():
            _set_threads(count)
            times.append(fit(config, mnist, device, full=True).train_seconds)
    return seconds


def _set_threads(count: int) -> None:
    if count:
        torch.set_num_threads(count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=6)
    parser.add_argument("--threads", type=int, nargs="+", default=[])
    args = parser.parse_args()
    for count, times in main(args.rounds, tuple(args.threads)).items():
        label = f"threads {count}" if count else "epoch seconds"
        print(f"{label}:", ", ".join(f"{s:.2f}" for s in times))
