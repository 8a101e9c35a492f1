"""The training configuration: one frozen record, built at the edge and passed down."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

Schedule = Literal["tutorial", "step", "exponential", "cosine", "none"]
Head = Literal["softmax", "logits"]
Loader = Literal["tensor", "torchvision"]
# "bf16": the hidden layers' training matmuls in bfloat16 (summed in fp32, rounded once; the
# weights, BatchNorm, the loss, the update and evaluation stay fp32), 1.4x (300/100) to 1.7x
# (710/380) faster epochs on a CPU with AVX512-BF16 or AMX; see the README, "Precision".
Precision = Literal["fp32", "bf16"]
# What a study or a command asks for: "auto" is resolved per device (hpo.device.resolve_precision).
PrecisionChoice = Literal["auto", "fp32", "bf16"]

SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)
HEADS: tuple[Head, ...] = get_args(Head)
LOADERS: tuple[Loader, ...] = get_args(Loader)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
PRECISION_CHOICES: tuple[PrecisionChoice, ...] = get_args(PrecisionChoice)

# The widest hidden layer hpo trains: two of them make 281M parameters, about 4.5 GB with their
# gradients and momentum, where a typo'd width (2,000,000,000) failed every trial with an
# allocator's traceback. The tutorial's are 300 and 100.
HIDDEN_MAX = 16_384
# A seed for numpy's and Optuna's generators (a study's seed seeds its sampler), which take 32 bits.
SEED_MAX = 2**32 - 1

# The fields a study may search, each with (its kind, the check, what the check means): a config
# is checked against them here, and a spec's values too (hpo.spec.FIELDS, with its own limits).
Kind = Literal["float", "int", "str"]
RULES: dict[str, tuple[Kind, Callable[[Any], bool], str]] = {
    "lr": ("float", lambda v: v > 0, "> 0"),
    "momentum": ("float", lambda v: 0 <= v < 1, "in [0, 1)"),
    "hidden1": ("int", lambda v: 1 <= v <= HIDDEN_MAX, f"in [1, {HIDDEN_MAX}]"),
    "hidden2": ("int", lambda v: 1 <= v <= HIDDEN_MAX, f"in [1, {HIDDEN_MAX}]"),
    "batch_size": ("int", lambda v: v >= 2, ">= 2 (BatchNorm cannot train on one sample)"),
    "head": ("str", lambda v: v in HEADS, "one of " + ", ".join(HEADS)),
    "schedule": ("str", lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
    "gamma": ("float", lambda v: 0 < v <= 1, "in (0, 1]"),
    "step_every": ("int", lambda v: v >= 1, ">= 1"),
}


def of_kind(value: Any, kind: Kind) -> bool:
    """Whether ``value`` has the kind (TOML's and Python's true is no number)."""
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == "int" else isinstance(value, int | float)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what one training run computes.

    The defaults are the tutorial's recipe exactly (the README, "The baseline"), including its
    double-softmax head, so ``TrainConfig()`` is the baseline.
    """

    lr: float = 0.01
    momentum: float = 0.9
    hidden1: int = 300
    hidden2: int = 100
    # "tutorial": lr *= gamma at the start of every epoch e with e % step_every == 0 (epoch 0
    # included, so the tutorial never trains at its nominal lr); "step": torch's StepLR.
    schedule: Schedule = "tutorial"
    gamma: float = 0.9
    step_every: int = 5
    batch_size: int = 64
    epochs: int = 20
    head: Head = "softmax"
    seed: int = 0
    loader: Loader = "tensor"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config key(s): {', '.join(unknown)}")
        return cls(**values)


def config_problems(c: TrainConfig) -> list[str]:
    """Every reason ``c`` cannot be trained, each naming the field."""
    out: list[str] = []
    for name, (kind, check, meaning) in RULES.items():
        value = getattr(c, name)
        if not of_kind(value, kind) or not check(value):
            out.append(f"{name} must be {meaning} (got {value!r})")
    if not of_kind(c.epochs, "int") or c.epochs < 1:
        out.append(f"epochs must be a positive integer (got {c.epochs!r})")
    if c.loader not in LOADERS:
        out.append(f"loader must be one of {', '.join(LOADERS)} (got {c.loader!r})")
    if c.precision not in PRECISIONS:
        out.append(f"precision must be one of {', '.join(PRECISIONS)} (got {c.precision!r})")
    elif c.precision != "fp32" and c.loader == "torchvision":
        out.append(
            f"precision {c.precision!r} needs the tensor loader: the tutorial's torchvision loop "
            'trains in fp32 (use precision = "fp32" with loader = "torchvision")'
        )
    return out
