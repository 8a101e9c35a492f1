"""``fit(config, mnist, device, on_epoch)``: train one configuration, report every epoch.

Knows nothing of Optuna: the search layer passes an ``on_epoch`` callback, which may raise to
stop training (that is how pruning ends a trial).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.fx.experimental._config as fx_config
from torch.utils.data import DataLoader

from hpo import interrupts
from hpo.aot_step import fits, load_step
from hpo.config import Precision, TrainConfig
from hpo.device import synchronize
from hpo.epoch_steps import EpochSteps
from hpo.fast_step import FlatState, gather_step, predict_logits
from hpo.mnist import Mnist
from hpo.model import Net, build_model, parameter_count
from hpo.schedules import lr_at

Status = Literal["complete", "diverged"]
EVAL_BATCH = 128  # the tutorial's test batch size


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


def use_compile(device: torch.device, requested: bool | None) -> bool:
    if requested is not None:
        return requested
    # MPS support in inductor is partial; elsewhere compiling pays for itself within an epoch.
    return device.type in ("cpu", "cuda")


_COMPILED: dict[tuple[str, str], Callable[..., None]] = {}
# Device types whose compiled step is the ahead-of-time package (hpo.aot_step) rather than
# torch.compile: the CPU. On a GPU the compiled step is captured into CUDA graphs, which
# torch.compile's step has been measured and tested with.
AHEAD_OF_TIME: tuple[str, ...] = ("cpu",)
# Inductor options per device type, read at the first compile (benchmarks/gpu_baseline.py
# compares them); none by default.
INDUCTOR_OPTIONS: dict[str, dict[str, Any]] = {}


def eager_step(precision: Precision) -> Callable[..., None]:
    return functools.partial(gather_step, precision=precision)


def _compiled_step(device: torch.device, precision: Precision) -> Callable[..., None]:
    """One compiled step per device type and precision per process; dynamic shapes so that
    every hidden size a study samples reuses it instead of recompiling (~5-20 s each here)."""
    key = (device.type, precision)
    if key not in _COMPILED:
        _COMPILED[key] = _without_duck_shapes(
            torch.compile(
                eager_step(precision),
                dynamic=True,
                fullgraph=True,
                options=INDUCTOR_OPTIONS.get(device.type),
            )
        )
    return _COMPILED[key]


def _without_duck_shapes(step: Callable[..., None]) -> Callable[..., None]:
    """``step`` traced with a symbol per size. By default dynamo gives sizes that are equal when
    it traces one symbol ("duck shapes"), so a first trial with hidden1 == hidden2, or a size
    equal to a batch's length, compiled a step that only fits such trials, and the next other one
    compiled again (5-20 s).
    The setting is read when a trace starts, so it is set around each call (about 5 us) rather
    than for the whole process."""

    @functools.wraps(step)
    def call(*args: Any) -> None:
        before = fx_config.use_duck_shape
        fx_config.use_duck_shape = False
        try:
            step(*args)
        finally:
            fx_config.use_duck_shape = before

    return call


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
        return _fit_torchvision(config, mnist, device, on_epoch, full=full)
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

    def warm_up(step: Callable[..., None]) -> None:
        _scratch_steps(step, state, train.x, train.y, momentum, head, lengths)

    want = use_compile(device, compile)
    aot = want and device.type in AHEAD_OF_TIME and fits(config.hidden1, config.hidden2)
    step, compiled, compile_seconds, aot = _prepare_step(
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

    history, status = _run_epochs(
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


def _run_epochs(
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
        if not math.isfinite(train_loss):
            return history, "diverged"
        if on_epoch is not None:
            on_epoch(metrics)
    return history, "complete"


def _prepare_step(
    device: torch.device,
    want_compiled: bool,
    warm_up: Callable[[Callable[..., None]], None],
    precision: Precision = "fp32",
    *,
    aot: bool = False,
) -> tuple[Callable[..., None], bool, float, bool]:
    """The step function, compiled where asked and possible; whether it is compiled, the
    seconds compiling (or loading the package) took, and whether it is the ahead-of-time one.

    ``aot``: try the package from ``hpo.aot_step`` first. Otherwise compiling happens here, in
    ``warm_up`` (``_scratch_steps``: throwaway copies of the state, once per batch length), so
    that no epoch's timing includes it and the real state sees exactly the steps of training."""
    if not want_compiled:
        return eager_step(precision), False, 0.0, False
    start = time.perf_counter()
    if aot:
        try:
            packaged, _ = load_step(precision)
            return packaged, True, time.perf_counter() - start, True
        except Exception as exc:  # export or the build failed: torch.compile may still work
            _warn_once("aot", f"no ahead-of-time CPU step ({_why(exc)}); using torch.compile")
            start = time.perf_counter()
    try:
        step = _compiled_step(device, precision)
        warm_up(step)
        synchronize(device)
    except Exception as exc:  # no C++ compiler or an unsupported backend: same math, eager
        _warn_once(
            f"compile-{device.type}",
            f"torch.compile failed on {device.type} ({_why(exc)}); training eagerly, several "
            "times slower (--no-compile skips the attempt)",
        )
        return eager_step(precision), False, 0.0, False
    return step, True, time.perf_counter() - start, False


_WARNED: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    """Say once per process why a step is slower than it could be: every trial would repeat it."""
    if what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _why(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _scratch_steps(
    step: Callable[..., None],
    state: FlatState,
    x: torch.Tensor,
    y: torch.Tensor,
    momentum: torch.Tensor,
    head: torch.Tensor,
    lengths: list[int],
) -> None:
    """One step per batch length on copies of ``state``: compiles and warms up, changes nothing."""
    scratch = FlatState(
        [p.clone() for p in state.params],
        [b.clone() for b in state.bufs],
        [r.clone() for r in state.running],
    )
    for length in lengths:
        step(
            x,
            y,
            torch.arange(min(length, len(y)), device=x.device),
            scratch.params,
            scratch.bufs,
            scratch.running,
            torch.zeros(3, device=x.device, dtype=torch.float64),
            torch.zeros((), device=x.device),
            momentum,
            head,
        )


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


def _fit_torchvision(
    config: TrainConfig, mnist: Mnist, device: torch.device, on_epoch: OnEpoch | None, *, full: bool
) -> FitResult:
    """The tutorial's loop: PIL images through transforms, a DataLoader, nn.Module, autograd and
    ``torch.optim.SGD``. Same batches in the same order as the tensor path, for comparison."""
    train_set, eval_set = mnist.torchvision_sets(full=full)
    net = build_model(config).to(device)
    optimiser = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)

    def train_epoch(lr: float) -> tuple[float, float]:
        for group in optimiser.param_groups:
            group["lr"] = lr
        order = [b.tolist() for b in batches(len(train_set), config.batch_size, generator)]
        net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, labels in DataLoader(train_set, batch_sampler=order):
            images, labels = images.to(device), labels.to(device)
            out = net(images)
            loss = criterion(out, labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item()
            correct += int((out.argmax(1) == labels).sum())
            seen += len(labels)
        return loss_sum / len(order), correct / seen

    eval_loader = DataLoader(eval_set, batch_size=EVAL_BATCH)
    history, status = _run_epochs(
        config, device, train_epoch, lambda: _evaluate_loader(net, eval_loader, device), on_epoch
    )
    return FitResult(
        config,
        str(device),
        "test" if full else "val",
        tuple(history),
        status,
        TUTORIAL_STEP,
        net.cpu().eval(),
    )


@torch.no_grad()
def _evaluate_loader(net: Net, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    net.eval()
    loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        out = net(images)
        loss += float(torch.nn.functional.cross_entropy(out, labels, reduction="sum"))
        correct += int((out.argmax(1) == labels).sum())
        seen += len(labels)
    return loss / seen, correct / seen
