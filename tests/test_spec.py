"""Study specs: every malformed case is refused with its key named; valid specs parse fully."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from hpo.config import TrainConfig
from hpo.spec import Choice, Fixed, FloatRange, IntRange, SpecError
from hpo.spec_overrides import SpecOverrides
from hpo.spec_parse import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="t.toml")
    return str(info.value)


def test_default_spec_file_parses_to_the_documented_study() -> None:
    spec = load_spec(REPO / "studies" / "mnist_mlp.toml")
    assert (spec.trials, spec.epochs, spec.seed, spec.objective) == (50, 20, 0, "val_acc")
    assert spec.precision == "auto"
    assert spec.sampler.to_dict() == {"name": "tpe", "n_startup_trials": 10, "multivariate": True}
    assert spec.pruner.to_dict() == {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2}
    assert spec.space["lr"] == FloatRange(1e-3, 0.3, log=True)
    assert spec.space["hidden1"] == IntRange(32, 1024, log=True)
    assert spec.space["schedule"] == Choice(("tutorial", "step", "exponential", "cosine", "none"))
    assert spec.space["batch_size"] == Fixed(64)
    assert spec.space["head"] == Fixed("logits")


def test_smoke_spec_file_parses() -> None:
    spec = load_spec(REPO / "studies" / "smoke.toml")
    assert spec.trials == 4 and spec.epochs == 2


def test_omitted_space_keys_are_fixed_at_the_tutorials_values() -> None:
    spec = parse_spec({"space": {"lr": {"low": 0.001, "high": 0.1}}})
    assert spec.space["momentum"] == Fixed(TrainConfig().momentum)
    assert spec.space["schedule"] == Fixed("tutorial")


def test_same_space_written_two_ways_has_the_same_digest() -> None:
    short = parse_spec({"space": {"lr": {"low": 0.001, "high": 0.1}}})
    explicit = parse_spec(
        {"space": {"lr": {"low": 0.001, "high": 0.1, "log": False}, "momentum": 0.9}}
    )
    other = parse_spec({"space": {"lr": {"low": 0.001, "high": 0.2}}})
    assert short.space.digest() == explicit.space.digest()
    assert short.space.digest() != other.space.digest()


def test_unknown_top_level_key_is_named_with_the_allowed_keys() -> None:
    msg = refused({"epoch": 3})
    assert "epoch: unknown key" in msg and "epochs" in msg and "t.toml" in msg


def test_unknown_space_key_is_named() -> None:
    assert "space.learning_rate: unknown key" in refused({"space": {"learning_rate": 0.1}})


def test_unknown_key_inside_a_range_is_named() -> None:
    msg = refused({"space": {"lr": {"low": 0.01, "high": 0.1, "lg": True}}})
    assert "space.lr.lg: unknown key" in msg


def test_a_seed_or_width_beyond_what_trains_is_refused_naming_the_limit() -> None:
    """A 2**32 seed failed in numpy after the study was made, and a 2,000,000,000-unit layer in
    the allocator at every trial, each with a traceback."""
    said = "seed: expected an integer in [0, 4294967295], got 4294967296 (integer)"
    assert said in refused({"seed": 2**32})
    space = {"lr": {"low": 0.001, "high": 0.1}}
    assert parse_spec({"seed": 2**32 - 1, "space": space}, source="t.toml").seed == 2**32 - 1
    assert "space.hidden1: must be in [1, 16384], got 2000000000" in refused(
        {"space": {"hidden1": 2_000_000_000}}
    )
    msg = refused({"space": {"hidden2": {"low": 8, "high": 10**17}}})
    assert "space.hidden2.high: must be in [1, 16384], got 100000000000000000" in msg
    with pytest.raises(SpecError, match=r"--seed must be an integer in \[0, 4294967295\]"):
        SpecOverrides(seed=2**32).apply(parse_spec({"space": space}, source="t.toml"))


def test_wrong_types_are_named_with_what_was_given() -> None:
    assert "epochs: expected an integer >= 1, got '20' (string)" in refused({"epochs": "20"})
    assert "seed: expected an integer in [0, 4294967295], got True (boolean)" in refused(
        {"seed": True}
    )
    msg = refused({"space": {"lr": {"low": "small", "high": 0.1}}})
    assert "space.lr.low: expected a number, got 'small' (string)" in msg
    msg = refused({"space": {"hidden1": 3.5}})
    assert "space.hidden1: expected an integer, got 3.5 (float)" in msg


def test_empty_and_inverted_ranges_are_refused() -> None:
    assert "space.lr: empty or inverted range" in refused(
        {"space": {"lr": {"low": 0.1, "high": 0.1}}}
    )
    assert "space.hidden1: empty or inverted range" in refused(
        {"space": {"hidden1": {"low": 512, "high": 32}}}
    )


def test_log_range_needs_a_positive_low() -> None:
    msg = refused({"space": {"momentum": {"low": 0.0, "high": 0.9, "log": True}}})
    assert "space.momentum: a log range needs low > 0" in msg


def test_a_space_with_nothing_to_search_is_refused() -> None:
    for data in ({}, {"space": {"lr": 0.05, "hidden1": 512}}):
        assert "space: every key is fixed, so there is nothing to search" in refused(data)


def test_a_range_and_choices_together_and_a_pruner_resource_of_zero_are_named() -> None:
    both = {"space": {"momentum": {"low": 0.5, "high": 0.9, "choices": [0.9]}}}
    assert "space.momentum: give a range (low, high) or choices, not both" in refused(both)
    logged = {"space": {"schedule": {"choices": ["step", "cosine"], "log": True}}}
    assert "space.schedule.log: only a range (low, high) has a log scale" in refused(logged)
    assert "not both" not in refused(logged)  # it gave no range
    zero = {"pruner": {"name": "hyperband", "min_resource": 0}}
    assert "pruner.min_resource: must be >= 1, got 0" in refused(zero)


def test_duplicate_choices_and_a_hyperband_reduction_factor_below_two_are_refused() -> None:
    """A repeated choice doubles its weight in every sampler without saying so; Hyperband with
    a reduction factor of 1 keeps every trial at every rung, and so never prunes."""
    assert refused({"space": {"hidden1": {"choices": [64, 64]}}}) == (
        "t.toml: invalid spec:\n  - space.hidden1.choices: has duplicates: [64, 64]"
    )
    assert refused({"pruner": {"name": "hyperband", "reduction_factor": 1}}) == (
        "t.toml: invalid spec:\n  - pruner.reduction_factor: must be >= 2, got 1"
    )
    space = {"hidden1": {"choices": [64, 128]}}
    spec = parse_spec({"space": space, "pruner": {"name": "hyperband", "reduction_factor": 2}})
    assert spec.space["hidden1"] == Choice((64, 128))
    assert spec.pruner.to_dict() == {"name": "hyperband", "min_resource": 1, "reduction_factor": 2}


def test_values_outside_a_fields_domain_are_refused() -> None:
    assert "space.momentum: must be in [0, 1), got 1.0" in refused({"space": {"momentum": 1.0}})
    assert "space.lr.low: must be > 0" in refused({"space": {"lr": {"low": -1, "high": 1}}})
    assert "space.batch_size: must be in [2, 50000]" in refused({"space": {"batch_size": 100_000}})


def test_a_batch_of_the_whole_tuning_set_is_the_largest_accepted() -> None:
    # 50,000: every tuning image in one batch (full-batch gradient descent) still trains.
    spec = parse_spec({"space": {"lr": {"low": 0.001, "high": 0.1}, "batch_size": 50_000}})
    assert spec.space["batch_size"] == Fixed(50_000)
    msg = refused({"space": {"batch_size": 50_001}})
    assert "space.batch_size: must be in [2, 50000] (BatchNorm" in msg and "got 50001" in msg


@pytest.mark.parametrize(
    ("section", "name", "defaults"),
    [
        ("sampler", "tpe", {"n_startup_trials": 10, "multivariate": True}),
        ("sampler", "random", {}),
        ("sampler", "cmaes", {"n_startup_trials": 1}),
        ("sampler", "qmc", {"qmc_type": "sobol"}),
        ("pruner", "median", {"n_startup_trials": 5, "n_warmup_steps": 2}),
        ("pruner", "hyperband", {"min_resource": 1, "reduction_factor": 3}),
        (
            "pruner",
            "successive_halving",
            {"min_resource": 1, "reduction_factor": 4, "min_early_stopping_rate": 0},
        ),
        ("pruner", "none", {}),
    ],
)
def test_an_omitted_option_takes_the_default_the_readme_lists(
    section: str, name: str, defaults: dict[str, Any]
) -> None:
    # The README's sampler and pruner tables give these in brackets; a spec naming only the
    # sampler or pruner gets them (and a changed default would change every such study).
    spec = parse_spec({section: {"name": name}, "space": {"lr": {"low": 0.001, "high": 0.1}}})
    assert getattr(spec, section).to_dict() == {"name": name, **defaults}


def test_infinite_values_are_refused_wherever_a_float_goes() -> None:
    inf = float("inf")
    assert "space.lr.high: must be a finite number, got inf" in refused(
        {"space": {"lr": {"low": 1e-3, "high": inf}}}
    )  # Optuna's samplers overflowed on it mid-study, after the baseline had trained
    assert "space.gamma: must be a finite number, got -inf" in refused(
        {"space": {"lr": {"low": 1e-3, "high": 0.1}, "gamma": -inf}}
    )


def test_a_conditional_parameter_no_allowed_schedule_uses_is_refused() -> None:
    searched = {"low": 0.5, "high": 0.99}
    msg = refused({"space": {"schedule": "cosine", "gamma": searched}})
    assert "space.gamma: searched, but no schedule this space allows (cosine) uses it" in msg
    msg = refused(
        {
            "space": {
                "schedule": {"choices": ["exponential", "cosine"]},
                "step_every": {"low": 1, "high": 5},
            }
        }
    )
    assert "space.step_every: searched, but no schedule this space allows (exponential, " in msg
    assert "gamma" not in msg  # exponential uses gamma
    ok = parse_spec({"space": {"schedule": {"choices": ["step", "cosine"]}, "gamma": searched}})
    assert ok.space["gamma"] == FloatRange(0.5, 0.99, False)


def test_unknown_sampler_pruner_and_schedule_are_named_with_the_choices() -> None:
    assert "sampler.name: 'bayes' is not one of tpe, random, cmaes, qmc" in refused(
        {"sampler": {"name": "bayes"}}
    )
    assert "pruner.name: 'asha' is not one of median, hyperband" in refused(
        {"pruner": {"name": "asha"}}
    )
    msg = refused({"space": {"schedule": {"choices": ["cosine", "linear"]}}})
    assert "space.schedule.choices[1]: must be one of tutorial, step" in msg


def test_a_name_given_as_an_array_or_a_table_is_named_not_a_crash() -> None:
    # Looked up in a dict, a list or a table raised TypeError (unhashable): a traceback, exit 1.
    assert "objective: ['val_acc'] is not one of val_acc, val_loss" in refused(
        {"objective": ["val_acc"]}
    )
    assert "sampler.name: ['tpe'] is not one of tpe" in refused({"sampler": {"name": ["tpe"]}})
    assert "pruner.name: {'a': 1} is not one of median" in refused({"pruner": {"name": {"a": 1}}})


def test_an_option_of_another_sampler_or_pruner_is_refused() -> None:
    assert "sampler.n_startup_trials: unknown key" in refused(
        {"sampler": {"name": "qmc", "n_startup_trials": 3}}
    )
    assert "pruner.n_warmup_steps: unknown key" in refused(
        {"pruner": {"name": "hyperband", "n_warmup_steps": 3}}
    )
    assert "sampler.qmc_type: 'lattice'" in refused(
        {"sampler": {"name": "qmc", "qmc_type": "lattice"}}
    )


def test_a_range_on_a_text_field_and_empty_choices_are_refused() -> None:
    assert "space.head: a text field takes" in refused({"space": {"head": {"low": 1, "high": 2}}})
    assert "space.schedule.choices: expected a non-empty array" in refused(
        {"space": {"schedule": {"choices": []}}}
    )


def test_direction_must_match_the_objective() -> None:
    assert "direction: val_acc is to be maximized" in refused({"direction": "minimize"})
    assert "objective: 'test_acc' is not one of" in refused({"objective": "test_acc"})


def test_all_problems_are_reported_at_once() -> None:
    msg = refused({"epochs": 0, "sampler": {"name": "x"}, "space": {"lr": 0}})
    assert "epochs:" in msg and "sampler.name" in msg and "space.lr" in msg


def test_bad_toml_and_missing_file_are_spec_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_overrides_are_validated_too() -> None:
    spec = parse_spec({"space": {"lr": {"low": 0.001, "high": 0.1}}})
    assert SpecOverrides(epochs=3, seed=7).apply(spec).epochs == 3
    assert SpecOverrides(epochs=3, seed=7).apply(spec).seed == 7
    assert SpecOverrides(precision="bf16").apply(spec).precision == "bf16"
    # The bounds themselves are seeds like any other, as in the spec file.
    assert SpecOverrides(seed=2**32 - 1).apply(spec).seed == 2**32 - 1
    assert SpecOverrides(seed=0, epochs=1).apply(spec).epochs == 1
    assert SpecOverrides().apply(spec) == spec  # none given: the file's values stand
    with pytest.raises(SpecError, match="--epochs"):
        SpecOverrides(epochs=0).apply(spec)
    with pytest.raises(SpecError, match=r"--precision must be auto\|fp32\|bf16 \(got 'fp16'\)"):
        SpecOverrides(precision="fp16").apply(spec)  # type: ignore[arg-type]
    with pytest.raises(SpecError) as every:  # each bad one named, in one message
        SpecOverrides(seed=-1, epochs=True, precision="fp16").apply(spec)  # type: ignore[arg-type]
    assert str(every.value) == (
        "--precision must be auto|fp32|bf16 (got 'fp16'); "
        "--epochs must be an integer >= 1 (got True); "
        "--seed must be an integer in [0, 4294967295] (got -1)"
    )


def test_overrides_give_the_run_flags_of_those_given_only() -> None:
    assert SpecOverrides().argv() == []
    assert SpecOverrides(seed=0, precision="fp32").argv() == ["--seed", "0", "--precision", "fp32"]
    assert SpecOverrides(7, 3, "bf16").argv() == [
        "--seed", "7", "--epochs", "3", "--precision", "bf16"
    ]  # fmt: skip


def test_precision_is_fp32_unless_the_spec_asks_and_is_one_of_the_known() -> None:
    lr = {"space": {"lr": {"low": 0.001, "high": 0.1}}}
    assert parse_spec(lr).precision == "fp32"  # the tutorial's arithmetic
    assert parse_spec(lr | {"precision": "auto"}).precision == "auto"
    assert parse_spec(lr | {"precision": "bf16"}).to_dict()["precision"] == "bf16"
    msg = refused(lr | {"precision": "half"})
    assert "precision: 'half' is not one of auto, fp32, bf16" in msg


@pytest.mark.parametrize(
    "key", ["lr", "momentum", "gamma", "hidden1", "hidden2", "step_every", "batch_size"]
)
def test_a_half_range_is_refused_with_an_example_that_key_accepts(key: str) -> None:
    said = refused({"space": {key: {"low": 1}}})
    example = tomllib.loads("x = " + said.split("e.g. ")[1].split("}")[0] + "}")["x"]
    spec = parse_spec({"space": {key: example}})  # the message's own example, as TOML reads it
    dim = dict(spec.space.dims)[key]
    log = example.get("log", False)
    assert dim in (
        FloatRange(example["low"], example["high"], log),
        IntRange(example["low"], example["high"], log),
    )
    # the default spec's own range, where it searches the key
    default = dict(load_spec(REPO / "studies" / "mnist_mlp.toml").space.dims)[key]
    assert dim == default or not isinstance(default, FloatRange | IntRange)
