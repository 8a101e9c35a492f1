"""Study specs as one frozen record: the search space, budget, sampler, pruner, seed, and the
tables a spec is checked against (``hpo.spec_parse`` reads and validates a TOML file into it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpo.config import (
    RULES,
    Kind,
    PrecisionChoice,
)


class SpecError(ValueError):
    """A spec that cannot run; the message names each bad key and its fix (CLI: exit 2)."""


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


@dataclass(frozen=True)
class Fixed:
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


# The study `hpo run` runs by default; its name (the file's stem) is every command's default study.
DEFAULT_SPEC = Path("studies/mnist_mlp.toml")

Dim = FloatRange | IntRange | Choice | Fixed

# The searchable TrainConfig fields (hpo.config.RULES); everything else in TrainConfig (epochs,
# seed, loader) belongs to the study, not the space. A batch can hold at most the 50,000 images
# tuning trains on.
FIELDS: dict[str, tuple[Kind, Any, str]] = {
    **RULES,
    "batch_size": (
        "int",
        lambda v: 2 <= v <= 50_000,
        "in [2, 50000] (BatchNorm needs two samples; tuning trains on 50,000 images)",
    ),
}
# Conditional parameters: sampled only for the schedules that use them.
USED_BY: dict[str, tuple[str, ...]] = {
    "gamma": ("tutorial", "step", "exponential"),
    "step_every": ("tutorial", "step"),
}


def in_use(name: str, schedule: object) -> bool:
    """Whether a config field has an effect under this schedule (gamma does not under cosine)."""
    return name not in USED_BY or schedule in USED_BY[name]


@dataclass(frozen=True)
class SearchSpace:
    """One Dim per searchable field, in FIELDS order; a field the spec omits is Fixed at the
    tutorial's value, so two specs that mean the same space hash the same."""

    dims: tuple[tuple[str, Dim], ...]

    def __getitem__(self, name: str) -> Dim:
        return dict(self.dims)[name]

    def to_dict(self) -> dict[str, Any]:
        return {name: dim.to_dict() for name, dim in self.dims}

    def digest(self) -> str:
        """sha256 of the canonical JSON: what makes a study the same study when resumed."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Component:
    """A sampler or pruner: its name and its options, defaults filled in."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str) -> Any:
        return dict(self.options)[key]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.options)}


# name -> {option: (type, default)}; an option of another name is an error, not ignored.
SAMPLERS: dict[str, dict[str, tuple[type, Any]]] = {
    "tpe": {"n_startup_trials": (int, 10), "multivariate": (bool, True)},
    "random": {},
    "cmaes": {"n_startup_trials": (int, 1)},
    "qmc": {"qmc_type": (str, "sobol")},
}
PRUNERS: dict[str, dict[str, tuple[type, Any]]] = {
    "median": {"n_startup_trials": (int, 5), "n_warmup_steps": (int, 2)},
    "hyperband": {"min_resource": (int, 1), "reduction_factor": (int, 3)},
    "successive_halving": {
        "min_resource": (int, 1),
        "reduction_factor": (int, 4),
        "min_early_stopping_rate": (int, 0),
    },
    "none": {},
}
Direction = Literal["maximize", "minimize"]
OBJECTIVES: dict[str, Direction] = {"val_acc": "maximize", "val_loss": "minimize"}


@dataclass(frozen=True)
class StudySpec:
    """A validated spec; made by ``parse_spec``, which holds the defaults of what a file omits."""

    space: SearchSpace
    trials: int
    epochs: int
    seed: int
    objective: str
    sampler: Component
    pruner: Component
    # Every trial's, the baseline's too; "auto" is resolved on each trial's device.
    precision: PrecisionChoice
    source: str = field(default="<spec>", compare=False)

    @property
    def direction(self) -> Direction:
        """The objective's: a spec may spell it out, but only as this (``parse_spec``)."""
        return OBJECTIVES[self.objective]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "epochs": self.epochs,
            "seed": self.seed,
            "precision": self.precision,
            "objective": self.objective,
            "direction": self.direction,
            "sampler": self.sampler.to_dict(),
            "pruner": self.pruner.to_dict(),
            "space": self.space.to_dict(),
        }
