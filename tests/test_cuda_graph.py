"""Whole-epoch CUDA graphs: same steps as running them one by one; asked for where impossible,
a clear error; a capture that fails falls back only when the graph was not demanded.

The GPU tests skip without CUDA (CI has none); they ran on an H100 (see the README)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import hpo.cuda_graph as cuda_graph
from hpo.config import TrainConfig
from hpo.epoch_steps import EpochSteps, chunk_plan
from hpo.mnist import Mnist
from hpo.train import batch_slices, batches, fit

SMALL = TrainConfig(hidden1=48, hidden2=24, epochs=3, batch_size=64)
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_graph_asked_for_without_a_gpu_is_an_error_naming_the_fix(
    synthetic_mnist: Mnist,
) -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match=r"CUDA graphs need a CUDA device.*graph=None or False"):
        fit(SMALL, synthetic_mnist, cpu, graph=True)
    assert not fit(dataclasses.replace(SMALL, epochs=1), synthetic_mnist, cpu).step.graphed


def test_batch_slices_tile_the_epoch_and_drop_a_trailing_single() -> None:
    assert batch_slices(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert batch_slices(129, 64) == [(0, 64), (64, 128)]
    assert batch_slices(50_000, 64)[-1] == (49_984, 50_000)


def test_an_epoch_is_a_few_distinct_chunks_so_capturing_is_cheap() -> None:
    plan = chunk_plan(batch_slices(50_000, 64))
    assert [len(lengths) for _, lengths in plan] == [64] * 12 + [13, 1]
    assert {lengths for _, lengths in plan} == {(64,) * 64, (64,) * 13, (16,)}
    assert [start for start, _ in plan] == [64 * 64 * i for i in range(13)] + [49_984]


def test_epoch_steps_train_on_every_batch_in_the_epochs_order() -> None:
    seen: list[list[int]] = []
    size, batch = 1_000, 7  # 142 batches of 7 and a last one of 6: chunks of 64, 64, 14 and 1
    steps = EpochSteps(
        lambda idx: seen.append(idx.tolist()),
        batch_slices(size, batch),
        size,
        torch.device("cpu"),
        None,
        lambda: None,
    )
    assert not steps.graphed
    for epoch in range(2):
        seen.clear()
        steps.run(torch.randperm(size, generator=torch.Generator().manual_seed(epoch)))
        expected = batches(size, batch, torch.Generator().manual_seed(epoch))
        assert seen == [b.tolist() for b in expected]


def test_graphs_are_on_by_default_where_available_and_the_environment_can_turn_them_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cuda_graph, "graphs_available", lambda device: True)
    cuda = torch.device("cuda")
    monkeypatch.delenv(cuda_graph.GRAPHS_ENV, raising=False)
    assert cuda_graph.use_graph(cuda, None)
    monkeypatch.setenv(cuda_graph.GRAPHS_ENV, "0")
    assert not cuda_graph.use_graph(cuda, None)
    assert cuda_graph.use_graph(cuda, True)  # asked for explicitly: the code's word wins


def test_a_failed_capture_falls_back_only_when_the_graph_was_not_demanded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_capture(*args: object) -> None:
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graph, "graphs_available", lambda device: True)
    monkeypatch.setattr(cuda_graph, "capture", broken_capture)
    steps: list[int] = []

    def run() -> None:
        steps.append(1)

    device = torch.device("cuda")
    runs = {(64,): run}
    with pytest.warns(UserWarning, match="capture failed, running steps one by one"):
        got, graphed, seconds = cuda_graph.maybe_graph(runs, lambda: None, device, None)
    assert (got, graphed, seconds) == (runs, False, 0.0)
    with pytest.raises(RuntimeError, match="not permitted"):
        cuda_graph.maybe_graph(runs, lambda: None, device, True)
    assert steps == []  # neither path ran a training step by itself


def test_warnings_during_a_capture_are_said_even_when_it_fails() -> None:
    cpu = torch.device("cpu")
    with (
        pytest.warns(UserWarning, match="why it failed"),
        pytest.raises(ValueError, match="boom"),
        cuda_graph.relayed_warnings(cpu),
    ):
        warnings.warn("why it failed", UserWarning, stacklevel=1)
        raise ValueError("boom")
    with pytest.warns(UserWarning, match="kept"), cuda_graph.relayed_warnings(cpu):
        warnings.warn("kept", UserWarning, stacklevel=1)


def test_an_empty_graph_is_an_error_not_a_warning() -> None:
    with (
        pytest.raises(RuntimeError, match="captured nothing on cpu"),
        cuda_graph.relayed_warnings(torch.device("cpu")),
    ):
        warnings.warn("The CUDA Graph is empty. This usually means ...", UserWarning, stacklevel=1)


@cuda_only
@pytest.mark.parametrize("compiled", [False, True])
def test_a_graphed_epoch_computes_what_the_steps_one_by_one_compute(
    synthetic_mnist: Mnist, compiled: bool
) -> None:
    """Same batches, same kernels: a replay must match the uncaptured loop epoch by epoch, and
    capturing must not have trained the model (it records, it does not run)."""
    config = dataclasses.replace(SMALL, lr=0.05, schedule="step", gamma=0.5, step_every=1)
    cuda = torch.device("cuda")
    graphed = fit(config, synthetic_mnist, cuda, compile=compiled, graph=True)
    plain = fit(config, synthetic_mnist, cuda, compile=compiled, graph=False)
    assert graphed.step.graphed and not plain.step.graphed and graphed.capture_seconds > 0
    for a, b in zip(graphed.epochs, plain.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.train_acc == pytest.approx(b.train_acc, abs=1e-9)
        assert a.eval_loss == pytest.approx(b.eval_loss, rel=1e-5)
    for name, value in plain.model.state_dict().items():
        torch.testing.assert_close(graphed.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


@cuda_only
def test_the_cuda_path_computes_what_the_cpu_path_computes(synthetic_mnist: Mnist) -> None:
    config = dataclasses.replace(SMALL, lr=0.05, head="logits")
    gpu = fit(config, synthetic_mnist, torch.device("cuda"))
    # Eager on the CPU: the CPU's compiled step equals its eager one (test_aot_step), and building
    # its package would cost a GPU lease tens of seconds.
    cpu = fit(config, synthetic_mnist, torch.device("cpu"), compile=False)
    assert gpu.step.graphed and gpu.device.startswith("cuda")
    for a, b in zip(gpu.epochs, cpu.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-3)
        assert a.eval_acc == pytest.approx(b.eval_acc, abs=2 / 200)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_graph_on_the_second_gpu_trains_as_one_on_the_first(synthetic_mnist: Mnist) -> None:
    """A --jobs worker on cuda:1 never makes it the current device: the capture must still
    record that device's work (on cuda:0's stream it recorded nothing and replays did nothing)."""
    config = dataclasses.replace(SMALL, lr=0.05, head="logits")
    first = fit(config, synthetic_mnist, torch.device("cuda:0"), graph=True)
    second = fit(config, synthetic_mnist, torch.device("cuda:1"), graph=True)
    assert second.step.graphed and second.device.startswith("cuda:1")
    for a, b in zip(second.epochs, first.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.eval_acc == pytest.approx(b.eval_acc, abs=1 / 200)
