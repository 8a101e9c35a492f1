"""Training speed: one epoch per data path and device, one per precision, and the tutorial's full
20-epoch run.

An "epoch" is what the tutorial's loop does per epoch: a training pass over the 60,000 images
in batches of 64, then an evaluation of the 10,000 test images. The variants that a ratio
compares alternate round by round (benchmarks/alternate.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from benchmarks.alternate import Variant, alternate
from benchmarks.conftest import devices
from hpo.config import Loader, Precision, TrainConfig
from hpo.mnist import Mnist
from hpo.train import FitResult, fit


@pytest.mark.parametrize("device_name", devices())
def test_one_epoch(benchmark, mnist: Mnist, device_name: str, smoke: bool) -> None:
    """The tutorial's ``torchvision`` loop and the default ``tensor`` path, alternated."""
    device = torch.device(device_name)
    loaders: tuple[Loader, ...] = ("torchvision", "tensor")
    configs = {loader: TrainConfig(epochs=1, loader=loader) for loader in loaders}
    fit(configs["tensor"], mnist, device, full=True)  # compile (and cache) outside the timing
    variants = [
        Variant(f"test_one_epoch[{device_name}-{loader}]", _fit(configs[loader], mnist, device))
        for loader in loaders
    ]
    # The tutorial's loop takes 8-9 s an epoch on a 2-core CPU, 9-13 s on an H100, where two
    # rounds keep gpu_session.sh's bench stage within its 80 s.
    alternate(benchmark, variants, rounds=5 if device.type == "cpu" else 2)
    for v in variants:
        result = v.results[-1]
        assert result.status == "complete"
        v.extra_info |= {
            "test_acc": result.final.eval_acc,
            "compiled": result.step.compiled,
            "aot": result.step.aot,
            "graphed": result.step.graphed,
            "train_images": len(mnist.arrays.train_labels),  # full=True
        }


@pytest.mark.parametrize("hidden", ["300x100", "710x380"])  # the tutorial's; a study's winner
@pytest.mark.parametrize("device_name", devices())
def test_epoch_precision(
    benchmark, mnist: Mnist, device_name: str, hidden: str, smoke: bool
) -> None:
    """fp32 and bf16 matmuls, alternated."""
    device = torch.device(device_name)
    h1, h2 = (int(h) for h in hidden.split("x"))
    precisions: tuple[Precision, ...] = ("fp32", "bf16")
    variants = []
    for precision in precisions:
        config = TrainConfig(epochs=1, hidden1=h1, hidden2=h2, head="logits", precision=precision)
        fit(config, mnist, device, full=True)  # build (and cache) the step outside the timing
        name = f"test_epoch_precision[{device_name}-{hidden}-{precision}]"
        variants.append(Variant(name, _fit(config, mnist, device)))
    alternate(benchmark, variants, rounds=5)
    for v, precision in zip(variants, precisions, strict=True):
        result = v.results[-1]
        assert result.status == "complete" and result.config.precision == precision
        v.extra_info |= {
            "test_acc": result.final.eval_acc,
            "train_seconds": result.train_seconds,
            "aot": result.step.aot,
        }


def _fit(config: TrainConfig, mnist: Mnist, device: torch.device) -> Callable[[], FitResult]:
    return lambda: fit(config, mnist, device, full=True)


@pytest.mark.parametrize("device_name", devices())
def test_tutorial_twenty_epochs(benchmark, mnist: Mnist, device_name: str, smoke: bool) -> None:
    device = torch.device(device_name)
    config = TrainConfig(epochs=2 if smoke else 20)
    fit(
        dataclasses.replace(config, epochs=1), mnist, device, full=True
    )  # compile outside the timing
    result = benchmark.pedantic(
        lambda: fit(config, mnist, device, full=True), rounds=1, iterations=1
    )
    assert result.status == "complete"
    benchmark.extra_info["test_acc"] = result.final.eval_acc
    benchmark.extra_info["train_seconds"] = result.train_seconds
    if not smoke:
        assert result.final.eval_acc >= 0.98
