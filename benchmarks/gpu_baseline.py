"""The tutorial's 20-epoch run on a GPU, for each way of running the same steps, over seeds.

    python -m benchmarks.gpu_baseline [--seeds 5] [--epochs 20] [--device cuda]

Each variant trains the tutorial's configuration (train on 60,000, evaluate the 10,000 test
images every epoch, as the tutorial does) once per seed. Prints a Markdown table:
seconds per epoch and for the whole run (training + evaluation: what the issue's "20-epoch
baseline in 2 s" counts), the one-off compile and capture seconds, and the test accuracy over
seeds. The step-by-step variants run fewer seeds (the slow ones). A graph replays exactly the
steps it captured, so with and without one the same seed must reach the same accuracy; compiled
and eager differ by rounding only. On a device without CUDA graphs (``--device cpu``) the graph
variants are skipped, each with a line that says so.
"""

from __future__ import annotations

import argparse
import statistics
import traceback
from typing import Any

import torch

import hpo.step_compile
from hpo.config import TrainConfig
from hpo.cuda_graph import graphs_available
from hpo.device import describe
from hpo.mnist import Mnist
from hpo.train import FitResult, fit

# (label, compile, graph, seeds: share of --seeds, inductor options)
Variant = tuple[str, bool, bool, float, dict[str, Any] | None]
VARIANTS: dict[str, Variant] = {
    "eager": ("eager, step by step", False, False, 0.2, None),
    "eager-graph": ("eager, CUDA graphs", False, True, 0.2, None),
    "compiled": ("compiled, step by step", True, False, 0.2, None),
    "compiled-graph": ("compiled, CUDA graphs (default)", True, True, 1.0, None),
    "combo-graph": ("compiled with combo_kernels, CUDA graphs", True, True, 1.0,
                    {"combo_kernels": True}),
}  # fmt: skip


def main(seeds: int, epochs: int, device_name: str, names: list[str]) -> None:
    device = torch.device(device_name)
    mnist = Mnist.load()
    print(f"device: {describe(device)}; torch {torch.__version__}; {epochs} epochs, full=True")
    rows = ["| variant | compiled | graphed | seeds | s/epoch (train) | run (train+eval) s "
            "| compile s | capture s | test acc % (mean, min-max) |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    accs: dict[str, dict[int, float]] = {}
    for name in names:
        label, _, graph, _, _ = VARIANTS[name]
        if graph and not graphs_available(device):
            # fit refuses graph=True there (an ungraphed run must never be reported as graphed):
            # say so in one line rather than a traceback per variant.
            print(f"skipped {name} ({label}): CUDA graphs need a CUDA device, not {device}")
            continue
        try:
            row, acc = _variant(VARIANTS[name], mnist, device, seeds, epochs)
        except Exception:  # one variant failing (an inductor option, say) must not lose the rest
            traceback.print_exc()
            continue
        rows.append(row)
        accs[name] = acc
    print("\n".join(rows))
    _agreement(accs)


def _variant(
    variant: Variant, mnist: Mnist, device: torch.device, seeds: int, epochs: int
) -> tuple[str, dict[int, float]]:
    label, compile_, graph, share, options = variant
    if compile_:  # a fresh compile with this variant's options
        torch._dynamo.reset()
        hpo.step_compile._COMPILED.clear()
        hpo.step_compile.INDUCTOR_OPTIONS[device.type] = options or {}
    n = max(1, round(seeds * share))
    warm = fit(TrainConfig(epochs=1), mnist, device, full=True, compile=compile_, graph=graph)
    results: list[FitResult] = []
    for seed in range(n):
        config = TrainConfig(epochs=epochs, seed=seed)
        results.append(fit(config, mnist, device, full=True, compile=compile_, graph=graph))
        print(f"  {label} seed {seed}: {_run_seconds(results[-1]):.2f} s, "
              f"{100 * results[-1].final.eval_acc:.2f}%", flush=True)  # fmt: skip
    accs = {seed: r.final.eval_acc for seed, r in enumerate(results)}
    acc = [100 * a for a in accs.values()]
    per_epoch = statistics.median(e.train_seconds for r in results for e in r.epochs)
    row = (
        f"| {label} | {warm.step.compiled} | {warm.step.graphed} | {n} | {per_epoch:.3f} | "
        f"{statistics.median(_run_seconds(r) for r in results):.2f} | "
        f"{warm.compile_seconds:.1f} | {results[0].capture_seconds:.2f} | "
        f"{statistics.mean(acc):.2f} ({min(acc):.2f}-{max(acc):.2f}) |"
    )
    return row, accs


def _run_seconds(result: FitResult) -> float:
    return sum(e.train_seconds + e.eval_seconds for e in result.epochs)


def _agreement(accs: dict[str, dict[int, float]], reference: str = "compiled-graph") -> None:
    """Each variant's largest accuracy difference from the default on a seed both ran: zero
    where they run the same kernels (graph or not), rounding-sized where the kernels differ."""
    for name, acc in accs.items():
        shared = acc.keys() & accs.get(reference, {}).keys()
        if name != reference and shared:
            worst = max(abs(acc[s] - accs[reference][s]) for s in shared)
            print(f"{name} vs {reference}: largest test-accuracy difference on one seed "
                  f"{100 * worst:.2f} pp over {len(shared)} seed(s)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"any of {', '.join(VARIANTS)} (default: all)")  # fmt: skip
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    main(args.seeds, args.epochs, args.device, args.variants or list(VARIANTS))
