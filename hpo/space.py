"""Search space -> trial parameters -> TrainConfig; the baseline (trial 0) is ``TrainConfig()``.

Only dimensions the spec searches become Optuna parameters; fixed ones go straight into the config.
``gamma`` and ``step_every`` are conditional: suggested only when the schedule uses them, so the
sampler never learns from a value that had no effect.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from hpo.config import Precision, TrainConfig
from hpo.spec import USED_BY, Choice, Dim, Fixed, FloatRange, IntRange, SearchSpace, in_use


class Suggester(Protocol):
    """The part of ``optuna.Trial`` used here (a FixedTrial or a fake works too)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def suggest(trial: Suggester, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for every searched dimension, skipping conditionals the schedule ignores."""
    params: dict[str, Any] = {}
    for name, dim in space.dims:
        if isinstance(dim, Fixed) or not _in_use(name, space, params):
            continue
        params[name] = _suggest_one(trial, name, dim)
    return params


def suggest_baseline(trial: Suggester, space: SearchSpace) -> dict[str, Any]:
    """The baseline's parameters, recorded through the same distributions as every trial so the
    sampler can learn from it; the enqueued values make Optuna return the tutorial's values."""
    return {name: _suggest_one(trial, name, space[name]) for name in baseline_params(space)}


def baseline_params(space: SearchSpace) -> dict[str, Any]:
    """What to enqueue as trial 0. Optuna 5 accepts an enqueued number outside its range (with a
    warning) but cannot store a category that is not among the choices, so such a category is left
    out: trial 0 still trains the tutorial's value, its ``config`` user attr says which."""
    base = TrainConfig()
    params: dict[str, Any] = {}
    for name, dim in space.dims:
        value = getattr(base, name)
        if isinstance(dim, Fixed) or not _in_use(name, space, {"schedule": base.schedule}):
            continue
        if isinstance(dim, Choice) and value not in dim.choices:
            continue
        params[name] = value
    return params


def baseline_outside_space(space: SearchSpace) -> list[str]:
    """Human notes on where the tutorial's values lie outside the space (trial 0 runs them)."""
    base, notes = TrainConfig(), []
    for name, dim in space.dims:
        value = getattr(base, name)
        if isinstance(dim, FloatRange | IntRange) and not dim.low <= value <= dim.high:
            notes.append(f"{name}={value}, outside [{dim.low}, {dim.high}]")
        elif isinstance(dim, Choice) and value not in dim.choices:
            notes.append(f"{name}={value!r}, not among the choices {list(dim.choices)}")
        elif isinstance(dim, Fixed) and dim.value != value:
            notes.append(f"{name}={value!r}, where the space fixes {dim.value!r}")
    return notes


def config_from_params(
    space: SearchSpace,
    params: dict[str, Any],
    *,
    epochs: int,
    seed: int,
    precision: Precision = "fp32",
) -> TrainConfig:
    """The config a trial trains: sampled values, else the space's fixed value, else the
    tutorial's (a conditional left unsampled has no effect on its schedule)."""
    values: dict[str, Any] = {}
    for name, dim in space.dims:
        if name in params:
            values[name] = params[name]
        elif isinstance(dim, Fixed):
            values[name] = dim.value
    return dataclasses.replace(
        TrainConfig(), **values, epochs=epochs, seed=seed, precision=precision
    )


def baseline_config(*, epochs: int, seed: int, precision: Precision = "fp32") -> TrainConfig:
    """The tutorial's recipe, in the study's precision like every other trial, so that the
    winners are compared with the baseline at equal arithmetic."""
    return dataclasses.replace(TrainConfig(), epochs=epochs, seed=seed, precision=precision)


def _in_use(name: str, space: SearchSpace, params: dict[str, Any]) -> bool:
    if name not in USED_BY:
        return True
    schedule_dim = space["schedule"]
    return in_use(name, params.get("schedule", getattr(schedule_dim, "value", None)))


def _suggest_one(trial: Suggester, name: str, dim: Dim) -> Any:
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.choices))
    return dim.value
