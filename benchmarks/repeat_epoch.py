"""How steady is this machine? One process trains the tutorial's config for one epoch N times
(full set, compiled tensor path, compiling excluded) and prints each epoch's training seconds.

    python -m benchmarks.repeat_epoch [N]

On a shared virtual machine the compiled path's speed can halve for minutes at a time; run this
before trusting a ratio from ``pytest benchmarks/``.
"""

from __future__ import annotations

import sys

import torch

from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.train import fit


def main(rounds: int) -> list[float]:
    mnist, device = Mnist.load(), torch.device("cpu")
    config = TrainConfig(epochs=1)
    fit(config, mnist, device, full=True)  # compile outside the timings
    return [fit(config, mnist, device, full=True).train_seconds for _ in range(rounds)]


if __name__ == "__main__":
    seconds = main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
    print("epoch seconds:", ", ".join(f"{s:.2f}" for s in seconds))
