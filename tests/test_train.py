"""The training engine: its schedules, its two data paths, determinism, divergence."""

from __future__ import annotations

import dataclasses
import math
import signal
import weakref

import pytest
import torch

import hpo.step_compile
import hpo.train
from hpo import interrupts
from hpo.config import Head, Precision, TrainConfig
from hpo.fast_step import _mm
from hpo.interrupts import Terminated
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.schedules import lr_at, lr_curve
from hpo.train import EpochMetrics, batches, fit, run_epochs

SMALL = TrainConfig(hidden1=48, hidden2=24, epochs=2, batch_size=64)


def test_tutorial_schedule_uses_the_recipes_learning_rates() -> None:
    lrs = lr_curve(TrainConfig())
    expected = [0.009] * 5 + [0.0081] * 5 + [0.00729] * 5 + [0.006561] * 5
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_step_schedule_is_torch_steplr() -> None:
    config = TrainConfig(lr=0.1, schedule="step", gamma=0.5, step_every=3, epochs=9)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    torch_lrs = []
    for _ in range(9):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lr_curve(config) == pytest.approx(torch_lrs)


def test_exponential_cosine_and_constant_schedules() -> None:
    exp = TrainConfig(lr=0.2, schedule="exponential", gamma=0.8, epochs=4)
    assert lr_curve(exp) == pytest.approx([0.2, 0.16, 0.128, 0.1024])
    cos = TrainConfig(lr=0.2, schedule="cosine", epochs=4)
    # Half a cosine over the run, by hand: 0.2 * (1 + cos(k pi / 4)) / 2, cos(pi/4) = sqrt(2)/2.
    half = math.sqrt(2) / 2
    assert lr_curve(cos) == pytest.approx([0.2, 0.1 * (1 + half), 0.1, 0.1 * (1 - half)])
    assert lr_curve(TrainConfig(lr=0.3, schedule="none", epochs=3)) == [0.3, 0.3, 0.3]
    assert lr_at(cos, 0) == 0.2


def test_cosine_schedule_is_torch_cosine_annealing_over_the_run() -> None:
    config = TrainConfig(lr=0.1, schedule="cosine", epochs=7)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    torch_lrs = []
    for _ in range(7):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lr_curve(config) == pytest.approx(torch_lrs, rel=1e-9)


def test_config_rejects_impossible_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig(momentum=1.5)
    with pytest.raises(ValueError, match="hidden1"):
        TrainConfig(hidden1=0)
    with pytest.raises(ValueError, match=r"batch_size must be >= 2 \(BatchNorm cannot train"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown training config key"):
        TrainConfig.from_dict({"lr": 0.1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the tensor loader"):
        TrainConfig(precision="bf16", loader="torchvision")


def test_config_takes_each_fields_last_valid_value_and_refuses_the_next() -> None:
    # gamma 1 is a constant schedule, and the widest layer is HIDDEN_MAX itself: both train.
    edge = TrainConfig(gamma=1.0, hidden1=16_384, hidden2=16_384, momentum=0.0, epochs=1)
    assert (edge.gamma, edge.hidden1, edge.hidden2, edge.epochs) == (1.0, 16_384, 16_384, 1)
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\] \(got 1.01\)"):
        TrainConfig(gamma=1.01)
    with pytest.raises(ValueError, match=r"hidden2 must be in \[1, 16384\] \(got 16385\)"):
        TrainConfig(hidden2=16_385)
    # Zero epochs would train nothing and report the untrained network as a result.
    with pytest.raises(ValueError, match=r"epochs must be a positive integer \(got 0\)"):
        TrainConfig(epochs=0)


def test_the_tutorial_loops_datasets_hold_the_same_images_as_the_tensor_path(
    synthetic_mnist: Mnist,
) -> None:
    """The torchvision loader must train and evaluate on what the tensor loader does, or the
    two loaders' results (compared in the README) measure different data."""
    for full in (False, True):
        tensors = synthetic_mnist.tensors(torch.device("cpu"), full=full)
        train, held = synthetic_mnist.torchvision_sets(full=full)
        assert torch.equal(train.dataset.targets[train.indices], tensors.train.y)  # type: ignore[attr-defined]
        if full:  # all 1,200 training images, evaluated on the 300 of the test set
            assert len(train) == 1_200 and tensors.test is not None
            assert torch.equal(held.targets, tensors.test.y)  # type: ignore[attr-defined]
        else:  # the same 200 held out, in the same order
            assert isinstance(held, torch.utils.data.Subset) and tensors.val is not None
            assert len(held) == 200
            assert torch.equal(held.dataset.targets[held.indices], tensors.val.y)  # type: ignore[attr-defined]


def test_training_accuracy_counts_the_samples_trained_not_the_one_left_out(
    synthetic_mnist: Mnist,
) -> None:
    # 1,000 tuning images in batches of 37: the last one alone is dropped, 999 are trained.
    config = dataclasses.replace(SMALL, batch_size=37, epochs=1)
    for loader in ("tensor", "torchvision"):
        acc = fit(
            dataclasses.replace(config, loader=loader), synthetic_mnist, torch.device("cpu")
        ).final.train_acc
        assert 0 < acc < 1 and acc * 999 == pytest.approx(round(acc * 999), abs=1e-6)


def test_batches_cover_the_set_once_and_drop_a_trailing_single() -> None:
    got = list(batches(129, 64, torch.Generator().manual_seed(0)))
    assert [len(b) for b in got] == [64, 64]  # the 129th sample alone cannot be batch-normed
    assert len(set(torch.cat(got).tolist())) == 128
    got = list(batches(130, 64, torch.Generator().manual_seed(0)))
    assert sorted(torch.cat(got).tolist()) == list(range(130))


@pytest.mark.parametrize("head", ["softmax", "logits"])
@pytest.mark.parametrize("compiled", [False, True])
def test_tensor_path_computes_what_the_tutorial_loop_computes(
    synthetic_mnist: Mnist, head: Head, compiled: bool
) -> None:
    """Hand-written backward + momentum vs nn.Module + autograd + torch.optim.SGD, same batches."""
    config = dataclasses.replace(
        SMALL, head=head, lr=0.05, schedule="step", gamma=0.5, step_every=1
    )
    cpu = torch.device("cpu")
    fast = fit(config, synthetic_mnist, cpu, compile=compiled)
    slow = fit(dataclasses.replace(config, loader="torchvision"), synthetic_mnist, cpu)
    for a, b in zip(fast.epochs, slow.epochs, strict=True):
        assert a.lr == b.lr
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.train_acc == pytest.approx(b.train_acc, abs=2 / 1000)
        assert a.eval_loss == pytest.approx(b.eval_loss, rel=1e-4)
        assert a.eval_acc == pytest.approx(b.eval_acc, abs=1 / 200)
    fast_state, slow_state = fast.model.state_dict(), slow.model.state_dict()
    for name, value in slow_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(fast_state[name], value, rtol=1e-3, atol=1e-4)
    assert fast.step.compiled is compiled


def test_both_heads_and_any_hidden_sizes_share_one_compiled_step(
    synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A study's baseline (softmax head) and its other trials (logits, other sizes) must not pay a
    # compile each: the head is a tensor flag and the shapes are dynamic, with no assumption that
    # sizes equal in the first trial (24 = hidden2) stay equal.
    from torch._dynamo.utils import counters

    monkeypatch.setattr(hpo.step_compile, "AHEAD_OF_TIME", ())  # torch.compile's step, as on a GPU:
    monkeypatch.setattr(hpo.step_compile, "_COMPILED", {})  # a fresh torch.compile for this test,
    torch._dynamo.reset()  # and no code cached from earlier tests' compiles
    counters.clear()
    cpu = torch.device("cpu")
    heads: tuple[tuple[Head, int], ...] = (
        ("softmax", 24),
        ("softmax", 48),
        ("logits", 48),
        ("logits", 40),
        ("softmax", 40),
    )
    for head, hidden1 in heads:
        config = dataclasses.replace(SMALL, head=head, hidden1=hidden1)
        assert fit(config, synthetic_mnist, cpu).step.compiled
    assert counters["stats"]["unique_graphs"] == 1


def test_bf16_matmuls_sum_rounded_operands_in_fp32_and_round_the_result_once() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 784, generator=g), torch.randn(784, 300, generator=g)
    rounded = a.bfloat16().float() @ b.bfloat16().float()
    out = _mm(a, b, "bf16")
    assert out.dtype == torch.float32
    assert torch.equal(out, out.bfloat16().float())  # a bfloat16 result, handed back as fp32
    # within one bfloat16 step (2**-8) of the fp32 sum of the rounded operands
    torch.testing.assert_close(out, rounded, rtol=2**-8, atol=1e-3)
    assert torch.equal(_mm(a, b, "fp32"), a @ b)


@pytest.mark.parametrize("compiled", [False, True])
def test_bf16_training_follows_fp32_training_closely_but_not_to_the_bit(
    synthetic_mnist: Mnist, compiled: bool
) -> None:
    config = dataclasses.replace(SMALL, lr=0.05)
    cpu = torch.device("cpu")
    fp32 = fit(config, synthetic_mnist, cpu, compile=compiled)
    bf16 = fit(
        dataclasses.replace(config, precision="bf16"), synthetic_mnist, cpu, compile=compiled
    )
    assert bf16.to_dict()["config"]["precision"] == "bf16"
    for a, b in zip(fp32.epochs, bf16.epochs, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=0.02)
        assert b.eval_acc == pytest.approx(a.eval_acc, abs=0.03)
    assert [e.train_loss for e in bf16.epochs] != [e.train_loss for e in fp32.epochs]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_config_and_seed_give_identical_metrics(
    synthetic_mnist: Mnist, precision: Precision
) -> None:
    config = dataclasses.replace(SMALL, precision=precision)
    first = fit(config, synthetic_mnist, torch.device("cpu"))
    second = fit(config, synthetic_mnist, torch.device("cpu"))
    keys = ("train_loss", "train_acc", "eval_loss", "eval_acc", "lr")
    assert [[getattr(e, k) for k in keys] for e in first.epochs] == [
        [getattr(e, k) for k in keys] for e in second.epochs
    ]
    other = fit(dataclasses.replace(config, seed=1), synthetic_mnist, torch.device("cpu"))
    assert other.final.train_loss != first.final.train_loss


def test_on_epoch_sees_every_epoch_and_can_stop_training(synthetic_mnist: Mnist) -> None:
    seen: list[EpochMetrics] = []
    result = fit(
        dataclasses.replace(SMALL, epochs=3), synthetic_mnist, torch.device("cpu"), seen.append
    )
    assert [m.epoch for m in seen] == [0, 1, 2]
    assert list(result.epochs) == seen
    assert result.eval_split == "val"

    class Stop(Exception):
        pass

    def stop_after_first(m: EpochMetrics) -> None:
        raise Stop

    with pytest.raises(Stop):
        fit(SMALL, synthetic_mnist, torch.device("cpu"), stop_after_first)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped raise
def test_a_stop_whose_raise_python_dropped_stops_any_training_before_its_next_epoch(
    synthetic_mnist: Mnist,
) -> None:
    """finalize, a confirmation and the baseline train through ``fit`` as trials do: a stop
    raised where Python drops it (a weakref callback) is raised again before the next epoch."""

    class Dropped:
        pass

    seen: list[EpochMetrics] = []

    def stop_in_a_callback(m: EpochMetrics) -> None:
        seen.append(m)
        gone = Dropped()
        weakref.finalize(gone, interrupts.stop, signal.SIGTERM)
        del gone  # "Exception ignored in ...": the Terminated goes nowhere

    try:
        with pytest.raises(Terminated):
            fit(dataclasses.replace(SMALL, epochs=3), synthetic_mnist, torch.device("cpu"),
                stop_in_a_callback)  # fmt: skip
    finally:
        interrupts.taken()
    assert [m.epoch for m in seen] == [0]


def test_a_diverging_run_stops_at_once_and_says_so(synthetic_mnist: Mnist) -> None:
    seen: list[EpochMetrics] = []
    config = dataclasses.replace(
        SMALL, lr=1e36, momentum=0.99, schedule="none", head="logits", epochs=5
    )
    result = fit(config, synthetic_mnist, torch.device("cpu"), seen.append)
    assert result.status == "diverged"
    # lr 1e36 blows up in the first epoch: it is the last one run, and the callback (which
    # reports to the pruner) never sees its NaN.
    assert [m.epoch for m in result.epochs] == [0] and result.final == result.epochs[-1]
    assert not math.isfinite(result.final.train_loss)
    assert seen == []


def test_a_run_whose_validation_loss_goes_nan_has_diverged_though_its_train_loss_did_not() -> None:
    # The last steps of an epoch can blow the weights up after the mean train loss was summed.
    seen: list[EpochMetrics] = []
    losses = iter([0.5, math.nan, 0.1])
    config = dataclasses.replace(SMALL, epochs=3)
    history, status = run_epochs(
        config,
        torch.device("cpu"),
        lambda _lr: (0.4, 0.9),
        lambda: (next(losses), 0.1),
        seen.append,
    )
    assert status == "diverged" and [m.epoch for m in history] == [0, 1]
    assert math.isnan(history[-1].eval_loss) and [m.epoch for m in seen] == [0]


def test_tune_runs_hold_out_validation_and_full_runs_use_the_test_set(
    synthetic_mnist: Mnist,
) -> None:
    tune = synthetic_mnist.tensors(torch.device("cpu"), full=False)
    full = synthetic_mnist.tensors(torch.device("cpu"), full=True)
    assert tune.val is not None and len(tune.train) + len(tune.val) == len(full.train)
    assert full.val is None
    result = fit(
        dataclasses.replace(SMALL, epochs=1), synthetic_mnist, torch.device("cpu"), full=True
    )
    assert result.eval_split == "test"


def test_the_default_config_is_the_tutorials_recipe() -> None:
    """Pinned as literals (tests elsewhere compare against TrainConfig() itself, which would
    follow any drift): README's recipe, shared/seed/RECIPE.md."""
    assert TrainConfig().to_dict() == {
        "lr": 0.01, "momentum": 0.9, "hidden1": 300, "hidden2": 100, "schedule": "tutorial",
        "gamma": 0.9, "step_every": 5, "batch_size": 64, "epochs": 20, "head": "softmax",
        "seed": 0, "loader": "tensor", "precision": "fp32",
    }  # fmt: skip
    assert parameter_count(300, 100) == 267_410  # 784-300-100-10 with BatchNorm
