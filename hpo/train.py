"""``fit(config, mnist, device, on_epoch)``: train one configuration, report every epoch.

Knows nothing of Optuna: the search layer passes an ``on_epoch`` callback, which may raise to
stop training (that is how pruning ends a trial).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from hpo import interrupts
from hpo.config import TrainConfig
from hpo.device import synchronize
from hpo.epoch_steps import EpochSteps
from hpo.fast_step import FlatState, Step, predict_logits
from hpo.mnist import Mnist
from hpo.model import Net, build_model, parameter_count
from hpo.schedules import lr_at
from hpo.step_compile import ahead_of_time, prepare_step, scratch_steps, use_compile

Status = Literal["complete", "diverged"]


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    eval_loss: float
    eval_acc: float
    train_seconds: float
    eval_seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


OnEpoch = Callable[[EpochMetrics], None]


@dataclass(frozen=True)
class StepKind:
    """How a fit's steps run, known before its first epoch (and so recorded even for a trial
    pruned before the end, which never sees the FitResult)."""

    compiled: bool
    aot: bool  # compiled ahead of time (hpo.aot_step), not by torch.compile
    graphed: bool  # replayed as CUDA graphs


OnPrepared = Callable[[StepKind], None]
TUTORIAL_STEP = StepKind(compiled=False, aot=False, graphed=False)  # the torchvision loop's


@dataclass(frozen=True)
class FitResult:
    config: TrainConfig
    device: str
    eval_split: str  # "val" (held out of training) or "test"
    epochs: tuple[EpochMetrics, ...]
    status: Status
    step: StepKind
    model: Net = field(repr=False, compare=False)
    compile_seconds: float = 0.0  # compiling, or loading the ahead-of-time package
    capture_seconds: float = 0.0  # capturing the CUDA graphs

    @property
    def final(self) -> EpochMetrics:
        return self.epochs[-1]

    @property
    def train_seconds(self) -> float:
        return sum(e.train_seconds for e in self.epochs)

    @property
    def param_count(self) -> int:
        return parameter_count(self.config.hidden1, self.config.hidden2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "device": self.device,
            "eval_split": self.eval_split,
            "status": self.status,
            **asdict(self.step),
            "compile_seconds": self.compile_seconds,
            "capture_seconds": self.capture_seconds,
            "param_count": self.param_count,
            "epochs": [e.to_dict() for e in self.epochs],
        }


def batch_slices(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Where each batch lies in an epoch's permutation of ``n`` samples, the same every epoch.

    A trailing batch of one is dropped, because BatchNorm cannot normalise a single sample in
    training mode."""
    bounds = ((start, min(start + batch_size, n)) for start in range(0, n, batch_size))
    return [(a, b) for a, b in bounds if b - a > 1]


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """An epoch's order of the ``n`` training samples: one draw of ``generator`` per epoch,
    whichever data path trains (their results compare batch for batch)."""
    return torch.randperm(n, generator=generator)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """An epoch's order (``epoch_order``) cut into batches (see ``batch_slices``)."""
    perm = epoch_order(n, generator)
    for a, b in batch_slices(n, batch_size):
        yield perm[a:b]


def fit(
    config: TrainConfig,
    mnist: Mnist,
    device: torch.device,
    on_epoch: OnEpoch | None = None,
    *,
    full: bool = False,
    compile: bool | None = None,
    graph: bool | None = None,
    on_prepared: OnPrepared | None = None,
) -> FitResult:
    """Train ``config``; evaluate every epoch on the validation split (``full=False``, training
    on the other 50,000) or on the test set (``full=True``, training on all 60,000).

    ``compile`` and ``graph`` (``None``: wherever the device supports them) choose how the same
    steps run: compiled (on the CPU ahead of time, ``hpo.aot_step``; elsewhere by
    ``torch.compile``), and on a GPU replayed as CUDA graphs of up to 64 steps
    (``hpo.epoch_steps``). ``on_prepared`` hears which, once, before the first epoch."""
    if config.loader == "torchvision":
        if on_prepared is not None:
            on_prepared(TUTORIAL_STEP)
        from hpo.tutorial_loop import fit_torchvision  # it imports this module

        return fit_torchvision(config, mnist, device, on_epoch, full=full)
    data = mnist.tensors(device, full=full)
    eval_set = data.test if full else data.val
    assert eval_set is not None
    train = data.train
    net = build_model(config)
    state = FlatState.from_module(net, device)
    softmax = config.head == "softmax"
    head = torch.tensor(softmax, device=device)  # the step's flag (see train_step)
    momentum = torch.tensor(config.momentum, device=device)
    slices = batch_slices(len(train), config.batch_size)
    seen = sum(b - a for a, b in slices)  # a trailing batch of one is not trained
    lengths = sorted({b - a for a, b in slices})

    def warm_up(step: Step) -> None:
        scratch_steps(step, state, train.x, train.y, momentum, head, lengths)

    want = use_compile(device, compile)
    aot = want and ahead_of_time(device, config)
    step, compiled, compile_seconds, aot = prepare_step(
        device, want, warm_up, config.precision, aot=aot
    )
    generator = torch.Generator().manual_seed(config.seed)
    lr_t = torch.zeros((), device=device)
    totals = torch.zeros(3, device=device, dtype=torch.float64)
    steps = EpochSteps(
        lambda idx: step(train.x, train.y, idx, state.params, state.bufs, state.running, totals,
                         lr_t, momentum, head),
        slices,
        len(train),
        device,
        graph,
        lambda: warm_up(step),
    )  # fmt: skip
    kind = StepKind(compiled, aot, steps.graphed)
    if on_prepared is not None:
        on_prepared(kind)

    def train_epoch(lr: float) -> tuple[float, float]:
        lr_t.fill_(lr)
        totals.zero_()
        steps.run(epoch_order(len(train), generator))
        loss_sum, correct, count = totals.tolist()  # the epoch's one host sync
        return loss_sum / count, correct / seen

    history, status = run_epochs(
        config, device, train_epoch,
        lambda: evaluate_state(state, eval_set.x, eval_set.y, softmax), on_epoch,
    )  # fmt: skip
    return FitResult(
        config,
        str(device),
        "test" if full else "val",
        tuple(history),
        status,
        kind,
        state.load_into(net).eval(),
        compile_seconds,
        steps.capture_seconds,
    )


def run_epochs(
    config: TrainConfig,
    device: torch.device,
    train_epoch: Callable[[float], tuple[float, float]],
    evaluate: Callable[[], tuple[float, float]],
    on_epoch: OnEpoch | None,
) -> tuple[list[EpochMetrics], Status]:
    """The epoch loop both data paths share: lr schedule, timing, evaluation, divergence."""
    history: list[EpochMetrics] = []
    for epoch in range(config.epochs):
        # A stop whose raise Python dropped (hpo.interrupts) stops every training here, a
        # search trial's, finalize's, a confirmation's or the baseline's, before another epoch.
        interrupts.raise_pending()
        lr = lr_at(config, epoch)
        synchronize(device)
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(lr)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        eval_loss, eval_acc = evaluate()
        metrics = EpochMetrics(epoch, lr, train_loss, train_acc, eval_loss, eval_acc,
                               train_seconds, time.perf_counter() - start)  # fmt: skip
        history.append(metrics)
        # The epoch's last steps can blow the weights up while its mean train loss stays
        # finite: then only the validation loss shows it.
        if not (math.isfinite(train_loss) and math.isfinite(eval_loss)):
            return history, "diverged"
        if on_epoch is not None:
            on_epoch(metrics)
    return history, "complete"


@torch.no_grad()
def evaluate_state(
    state: FlatState, x: torch.Tensor, y: torch.Tensor, softmax: bool
) -> tuple[float, float]:
    loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(y), 10_000):
        out = predict_logits(x[start : start + 10_000], state.params, state.running, softmax)
        target = y[start : start + 10_000]
        loss += torch.nn.functional.cross_entropy(out, target, reduction="sum")
        correct += (out.argmax(1) == target).sum()
    return loss.item() / len(y), correct.item() / len(y)


@torch.no_grad()
def predict(model: Net, x: torch.Tensor) -> torch.Tensor:
    """Predicted classes for normalised images ``x`` (N, 784), in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + 10_000]).argmax(1) for i in range(0, len(x), 10_000)])
