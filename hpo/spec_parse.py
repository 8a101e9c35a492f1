"""A study spec's TOML file -> ``StudySpec``.

Everything is validated before anything runs; every problem names its key and the fix, and all
problems in a file are reported together so that one edit fixes them.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo.config import (
    HEADS,
    PRECISION_CHOICES,
    SCHEDULES,
    SEED_MAX,
    Kind,
    TrainConfig,
    of_kind,
)
from hpo.spec import (
    FIELDS,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    USED_BY,
    Choice,
    Component,
    Dim,
    Fixed,
    FloatRange,
    IntRange,
    SearchSpace,
    SpecError,
    StudySpec,
)

_ARTICLE: dict[Kind, str] = {"float": "a number", "int": "an integer", "str": "a string"}


def load_spec(path: Path) -> StudySpec:
    if path.is_dir():
        specs = ", ".join(sorted(p.name for p in path.glob("*.toml"))) or "none"
        raise SpecError(f"--spec {path} is a folder, not a spec file (TOML files there: {specs})")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (resolved against {Path.cwd()})"
        raise SpecError(
            f"spec file {path} not found{where}; pass --spec PATH, "
            "e.g. --spec studies/mnist_mlp.toml from the repository root"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    return parse_spec(data, source=str(path))


def parse_spec(data: Mapping[str, Any], *, source: str = "<spec>") -> StudySpec:
    problems: list[str] = []
    top = {
        "trials",
        "epochs",
        "seed",
        "precision",
        "objective",
        "direction",
        "sampler",
        "pruner",
        "space",
    }
    _unknown(data, top, "", problems)
    trials = _int(data, "trials", 50, 1, problems)
    epochs = _int(data, "epochs", 20, 1, problems)
    seed = _int(data, "seed", 0, 0, problems, high=SEED_MAX)
    precision = data.get("precision", "fp32")
    if precision not in PRECISION_CHOICES:
        problems.append(
            f"precision: {precision!r} is not one of {', '.join(PRECISION_CHOICES)} (auto: bf16 "
            "on a CPU with bfloat16 units, else fp32; bf16: the hidden layers' matmuls in "
            "bfloat16; fp32: the tutorial's)"
        )
    objective = data.get("objective", "val_acc")
    known = isinstance(objective, str) and objective in OBJECTIVES  # a list is no name
    direction = data.get("direction", OBJECTIVES[objective] if known else "maximize")
    if not known:
        problems.append(f"objective: {objective!r} is not one of {', '.join(OBJECTIVES)}")
    elif direction != OBJECTIVES[objective]:
        problems.append(
            f"direction: {objective} is to be {OBJECTIVES[objective]}d, not {direction!r}; "
            f'set direction = "{OBJECTIVES[objective]}" or leave it out'
        )
    sampler = _component(data.get("sampler", {}), "sampler", SAMPLERS, "tpe", problems)
    pruner = _component(data.get("pruner", {}), "pruner", PRUNERS, "median", problems)
    space = _space(data.get("space", {}), problems)
    problems += _unused_conditionals(space)
    if not problems and all(isinstance(dim, Fixed) for _, dim in space.dims):
        problems.append(
            "space: every key is fixed, so there is nothing to search; give at least one a range "
            "or choices, e.g. lr = { low = 1e-3, high = 0.3, log = true } "
            "(studies/mnist_mlp.toml has them all)"
        )
    if problems:
        raise SpecError(f"{source}: invalid spec:\n  - " + "\n  - ".join(problems))
    return StudySpec(space, trials, epochs, seed, objective, sampler, pruner, precision, source)


def _unused_conditionals(space: SearchSpace) -> list[str]:
    """A conditional parameter searched where no schedule the space allows uses it: it would
    never be sampled, and the space would search less than it says."""
    schedule = space["schedule"]
    if isinstance(schedule, Choice):
        allowed = schedule.choices
    elif isinstance(schedule, Fixed):
        allowed = (schedule.value,)
    else:  # a range, refused already
        return []
    out = []
    for name, users in USED_BY.items():
        if not isinstance(space[name], Fixed) and not set(allowed) & set(users):
            out.append(
                f"space.{name}: searched, but no schedule this space allows "
                f"({', '.join(map(str, allowed))}) uses it (only {', '.join(users)} do); give it "
                f"one value or leave it out, or allow one of those schedules"
            )
    return out


def _describe(value: Any) -> str:
    kind = {
        bool: "boolean",
        str: "string",
        int: "integer",
        float: "float",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _unknown(table: Mapping[str, Any], allowed: set[str], prefix: str, out: list[str]) -> None:
    for key in sorted(set(table) - allowed):
        out.append(f"{prefix}{key}: unknown key; allowed here: {', '.join(sorted(allowed))}")


def _int(
    data: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    out: list[str],
    *,
    high: int | None = None,
) -> int:
    value = data.get(key, default)
    if not of_kind(value, "int") or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        out.append(f"{key}: expected an integer {bounds}, got {_describe(value)}")
        return default
    return int(value)


def _component(
    raw: Any,
    key: str,
    table: dict[str, dict[str, tuple[type, Any]]],
    default: str,
    out: list[str],
) -> Component:
    if not isinstance(raw, dict):
        out.append(f'{key}: expected a table like [{key}] name = "{default}"; got {_describe(raw)}')
        return Component(default)
    name = raw.get("name", default)
    if not isinstance(name, str) or name not in table:
        out.append(f"{key}.name: {name!r} is not one of {', '.join(table)}")
        return Component(default)
    allowed = table[name]
    _unknown(raw, {"name", *allowed}, f"{key}.", out)
    options = []
    for option, (kind, fallback) in allowed.items():
        value = raw.get(option, fallback)
        bad = not of_kind(value, "int") or value < 0 if kind is int else not isinstance(value, kind)
        if bad:
            want = "an integer >= 0" if kind is int else f"a {kind.__name__}"
            out.append(f"{key}.{option}: expected {want}, got {_describe(value)}")
            value = fallback
        options.append((option, value))
    if name == "qmc" and dict(options)["qmc_type"] not in ("sobol", "halton"):
        out.append(f"{key}.qmc_type: {dict(options)['qmc_type']!r} is not one of sobol, halton")
    for option, least in (("min_resource", 1), ("reduction_factor", 2)):
        if option in dict(options) and dict(options)[option] < least:
            out.append(f"{key}.{option}: must be >= {least}, got {dict(options)[option]!r}")
    return Component(name, tuple(options))


def _space(raw: Any, out: list[str]) -> SearchSpace:
    baseline = TrainConfig()
    if not isinstance(raw, dict):
        out.append(f"space: expected a table [space], got {_describe(raw)}")
        raw = {}
    _unknown(raw, set(FIELDS), "space.", out)
    dims: list[tuple[str, Dim]] = []
    for name in FIELDS:
        dim = _dim(name, raw[name], out) if name in raw else Fixed(getattr(baseline, name))
        dims.append((name, dim))
    return SearchSpace(tuple(dims))


# A range each numeric field takes: the default spec's (studies/mnist_mlp.toml) where it searches
# the field; batch_size, fixed there at the tutorial's 64, around it.
RANGE_EXAMPLES = {
    "lr": "{low = 1e-3, high = 0.3, log = true}",
    "momentum": "{low = 0.5, high = 0.99}",
    "hidden1": "{low = 32, high = 1024, log = true}",
    "hidden2": "{low = 16, high = 512, log = true}",
    "batch_size": "{low = 32, high = 256, log = true}",
    "gamma": "{low = 0.5, high = 0.99}",
    "step_every": "{low = 1, high = 10}",
}


def _dim(name: str, raw: Any, out: list[str]) -> Dim:
    kind, check, meaning = FIELDS[name]
    key = f"space.{name}"
    fallback = Fixed(getattr(TrainConfig(), name))

    def value_ok(value: Any, where: str) -> bool:
        if not of_kind(value, kind):
            out.append(f"{where}: expected {_ARTICLE[kind]}, got {_describe(value)}")
            return False
        if kind == "float" and not math.isfinite(value):  # TOML has inf and nan
            out.append(f"{where}: must be a finite number, got {value!r}")
            return False
        if not check(value):
            out.append(f"{where}: must be {meaning}, got {value!r}")
            return False
        return True

    if not isinstance(raw, dict):
        return Fixed(float(raw) if kind == "float" else raw) if value_ok(raw, key) else fallback
    if "choices" in raw:
        if {"low", "high"} & set(raw):
            out.append(f"{key}: give a range (low, high) or choices, not both")
            return fallback
        if "log" in raw:  # a log scale is a range's: choices are drawn as given
            out.append(f"{key}.log: only a range (low, high) has a log scale; drop it")
            return fallback
        _unknown(raw, {"choices"}, f"{key}.", out)
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            out.append(f"{key}.choices: expected a non-empty array, got {_describe(choices)}")
            return fallback
        if len(set(map(repr, choices))) != len(choices):
            out.append(f"{key}.choices: has duplicates: {choices!r}")
        good = all([value_ok(c, f"{key}.choices[{i}]") for i, c in enumerate(choices)])
        return Choice(tuple(choices)) if good else fallback
    if kind == "str":
        choices = ", ".join(f'"{c}"' for c in (SCHEDULES if name == "schedule" else HEADS))
        out.append(f"{key}: a text field takes a value or {{choices = [{choices}]}}, not a range")
        return fallback
    _unknown(raw, {"low", "high", "log"}, f"{key}.", out)
    if "low" not in raw or "high" not in raw:
        example = RANGE_EXAMPLES.get(name, "{low = 1, high = 10}")
        out.append(
            f"{key}: a range needs both low and high, e.g. {example}, "
            "or use {choices = [...]} or a plain value"
        )
        return fallback
    log = raw.get("log", False)
    if not isinstance(log, bool):
        out.append(f"{key}.log: expected true or false, got {_describe(log)}")
        return fallback
    if not all([value_ok(raw["low"], f"{key}.low"), value_ok(raw["high"], f"{key}.high")]):
        return fallback
    low, high = raw["low"], raw["high"]
    if low >= high:
        out.append(
            f"{key}: empty or inverted range (low {low!r} >= high {high!r}); make low < "
            "high, or give a single value to fix it"
        )
        return fallback
    if log and low <= 0:
        out.append(f"{key}: a log range needs low > 0 (got {low!r}); raise low or drop log")
        return fallback
    return IntRange(low, high, log) if kind == "int" else FloatRange(float(low), float(high), log)
