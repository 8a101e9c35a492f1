"""The tutorial's 20-epoch run on a GPU, for each way of running the same steps, over seeds.

    python -m benchmarks.gpu_baseline [--seeds 5] [--epochs 20] [--device cuda]

Each variant trains the tutorial's configuration (train on 60,000, evaluate the 10,000 test
images every epoch, as the tutorial does) once per seed. Prints a Markdown table:
seconds per epoch and for the whole run (training + evaluation: what the issue's "20-epoch
baseline in 2 s" counts), the one-off compile and capture seconds, and the test accuracy over
seeds. The eager variants run fewer seeds (the slow ones). A graph replays exactly the steps it
captured, so with and without one the same seed must reach the same accuracy; compiled and
eager differ by rounding only.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.mnist import Mnist
from hpo.train import FitResult, fit

# (label, compile, graph, share of --seeds it runs)
VARIANTS = (
    ("eager, step by step", False, False, 0.2),
    ("eager, one CUDA graph per epoch", False, True, 0.2),
    ("compiled, step by step", True, False, 1.0),
    ("compiled, one CUDA graph per epoch (default)", True, True, 1.0),
)


def main(seeds: int, epochs: int, device_name: str) -> None:
    device = torch.device(device_name)
    mnist = Mnist.load()
    print(f"device: {describe(device)}; torch {torch.__version__}; {epochs} epochs, full=True")
    rows = ["| variant | seeds | s/epoch (train) | run (train+eval) s | compile s | capture s "
            "| test acc % (mean, min-max) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    accs: dict[tuple[bool, bool], dict[int, float]] = {}
    for label, compile_, graph, share in VARIANTS:
        n = max(1, round(seeds * share))
        warm = fit(TrainConfig(epochs=1), mnist, device, full=True, compile=compile_, graph=graph)
        results: list[FitResult] = []
        for seed in range(n):
            config = TrainConfig(epochs=epochs, seed=seed)
            results.append(fit(config, mnist, device, full=True, compile=compile_, graph=graph))
            print(f"  {label} seed {seed}: {_run_seconds(results[-1]):.2f} s, "
                  f"{100 * results[-1].final.eval_acc:.2f}%", flush=True)  # fmt: skip
        accs[compile_, graph] = {seed: r.final.eval_acc for seed, r in enumerate(results)}
        acc = [100 * a for a in accs[compile_, graph].values()]
        per_epoch = statistics.median(e.train_seconds for r in results for e in r.epochs)
        rows.append(
            f"| {label} | {n} | {per_epoch:.3f} | "
            f"{statistics.median(_run_seconds(r) for r in results):.2f} | "
            f"{warm.compile_seconds:.1f} | {results[0].capture_seconds:.2f} | "
            f"{statistics.mean(acc):.2f} ({min(acc):.2f}-{max(acc):.2f}) |"
        )
    print("\n".join(rows))
    _agreement(accs)


def _run_seconds(result: FitResult) -> float:
    return sum(e.train_seconds + e.eval_seconds for e in result.epochs)


def _agreement(accs: dict[tuple[bool, bool], dict[int, float]]) -> None:
    """Per compile setting: the largest accuracy difference, graph vs no graph, on one seed."""
    for compile_ in (False, True):
        graphed, plain = accs.get((compile_, True), {}), accs.get((compile_, False), {})
        diffs = [abs(graphed[s] - plain[s]) for s in graphed.keys() & plain.keys()]
        if diffs:
            print(f"{'compiled' if compile_ else 'eager'}: graph vs step by step, same seed, "
                  f"largest test-accuracy difference: {100 * max(diffs):.2f} pp "
                  f"over {len(diffs)} seed(s)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    main(args.seeds, args.epochs, args.device)
