"""Training speed: one epoch per data path and device, one per precision, and the tutorial's full
20-epoch run.

An "epoch" is what the tutorial's loop does per epoch: a training pass over the 60,000 images
in batches of 64, then an evaluation of the 10,000 test images.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.conftest import devices
from hpo.config import Loader, Precision, TrainConfig
from hpo.mnist import Mnist
from hpo.train import fit


@pytest.mark.parametrize("loader", ["torchvision", "tensor"])
@pytest.mark.parametrize("device_name", devices())
def test_one_epoch(benchmark, mnist: Mnist, device_name: str, loader: Loader, smoke: bool) -> None:
    device = torch.device(device_name)
    config = TrainConfig(epochs=1, loader=loader)
    if loader == "tensor":
        fit(config, mnist, device, full=True)  # compile (and cache) outside the timing
    # The tutorial's loop is the slow side (8-9 s an epoch on a 2-core CPU, 9-13 s on an H100,
    # where the DataLoader starves the GPU) and varies least: fewer rounds, on a GPU one.
    rounds = 7 if loader == "tensor" else 3 if device.type == "cpu" else 1
    result = benchmark.pedantic(
        lambda: fit(config, mnist, device, full=True), rounds=rounds, iterations=1
    )
    assert result.status == "complete"
    benchmark.extra_info["test_acc"] = result.final.eval_acc
    benchmark.extra_info["compiled"] = result.step.compiled
    benchmark.extra_info["graphed"] = result.step.graphed
    benchmark.extra_info["train_images"] = len(mnist.arrays.train_labels)  # full=True


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("hidden", ["300x100", "710x380"])  # the tutorial's; a study's winner
@pytest.mark.parametrize("device_name", devices())
def test_epoch_precision(
    benchmark, mnist: Mnist, device_name: str, hidden: str, precision: Precision, smoke: bool
) -> None:
    device = torch.device(device_name)
    h1, h2 = (int(h) for h in hidden.split("x"))
    config = TrainConfig(epochs=1, hidden1=h1, hidden2=h2, head="logits", precision=precision)
    fit(config, mnist, device, full=True)  # build (and cache) the step outside the timing
    result = benchmark.pedantic(
        lambda: fit(config, mnist, device, full=True), rounds=5, iterations=1
    )
    assert result.status == "complete" and result.config.precision == precision
    benchmark.extra_info["test_acc"] = result.final.eval_acc
    benchmark.extra_info["train_seconds"] = result.train_seconds
    benchmark.extra_info["aot"] = result.step.aot


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
