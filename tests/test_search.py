"""The study driver on tiny learnable synthetic data: sampling, baseline, determinism, pruning,
divergence, Ctrl-C, refusal of a changed space, TensorBoard events, finalize."""

from __future__ import annotations

import dataclasses
import io
import math
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import hpo.device
import hpo.retrain
import hpo.search
import hpo.study_setup
import hpo.study_summary
import hpo.sweeper
import hpo.trial
from hpo.algorithms import make_sampler
from hpo.cli.common import stop_once
from hpo.config import Precision, TrainConfig
from hpo.data import MnistArrays, raw_dir
from hpo.errors import HpoError
from hpo.finalize import finalize
from hpo.idx import write_idx
from hpo.interrupts import Terminated
from hpo.liveness import this_process
from hpo.lost_trials import INTERRUPTED, not_requeued, queue_again, requeue
from hpo.mnist import Mnist
from hpo.progress import Counts, Progress, clock_text
from hpo.provenance import library_versions
from hpo.pruners import make_pruner
from hpo.records import TARGET_ATTR, baseline_of
from hpo.retrain import load_model, models_dir, trained
from hpo.sampling import TrialSeededSampler, training_seed
from hpo.search import run_study
from hpo.space import baseline_outside_space, baseline_params, config_from_params, suggest
from hpo.spec import StudySpec
from hpo.spec_parse import parse_spec
from hpo.splits import normalise
from hpo.storage import GRACE_FACTOR, open_storage
from hpo.study_setup import (
    StudyMismatchError,
    check_study,
    open_study,
    restore_baseline,
    resume_notes,
    setup_notes,
)
from hpo.study_summary import outcome, summarize
from hpo.tb import trial_dir
from hpo.train import EpochMetrics, FitResult, OnEpoch, predict
from hpo.trial import CURVE_KEYS, UNFINISHED
from tests.support.cli import USER_ATTRS

CPU = torch.device("cpu")
TINY_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 0.3, "log": True},
    "momentum": {"low": 0.5, "high": 0.95},
    "hidden1": {"low": 8, "high": 32, "log": True},
    "hidden2": {"low": 8, "high": 16},
    "schedule": {"choices": ["tutorial", "step", "exponential", "cosine", "none"]},
    "gamma": {"low": 0.5, "high": 0.99},
    "step_every": {"low": 1, "high": 3},
    "head": "logits",
}


def learnable_arrays(n_train: int, n_test: int, seed: int = 0) -> MnistArrays:
    """Ten noisy class templates: learnable in an epoch or two, unlike uniform noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 28, 28, generator=g) * 255
    out: list[torch.Tensor] = []
    for n in (n_train, n_test):
        y = torch.randint(0, 10, (n,), generator=g)
        x = templates[y] * 0.25 + torch.rand(n, 28, 28, generator=g) * 190
        out += [x.clamp(0, 255).to(torch.uint8), y]
    return MnistArrays(*out)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Mnist:
    root = tmp_path_factory.mktemp("mnist")
    arrays = learnable_arrays(1500, 300)
    for name, tensor in zip(
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
        arrays.__dict__.values(),
        strict=True,
    ):
        write_idx(raw_dir(root) / name, tensor)
    return Mnist(root, arrays, val_size=500)


def tiny_spec(**top: Any) -> StudySpec:
    space = {**TINY_SPACE, **top.pop("space", {})}
    data = {
        "trials": 4,
        "epochs": 2,
        "seed": 0,
        "sampler": {"name": "tpe", "n_startup_trials": 2},
        "pruner": {"name": "none"},
        "space": space,
        **top,
    }
    return parse_spec(data)


def run(spec: StudySpec, tmp: Path, n: int, name: str = "s", **kw: Any) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp / 'hpo.db'}", heartbeat_interval=1)
    kw.setdefault("runs_dir", tmp / "runs")
    compile_ = kw.pop("compile", False)
    run_study(spec, storage, name, n, CPU, kw.pop("mnist"), Progress(), compile=compile_, **kw)
    return optuna.load_study(study_name=name, storage=storage)


def test_sampled_params_respect_the_space_and_its_conditionals() -> None:
    spec = tiny_spec()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    schedules = set()
    for _ in range(150):
        trial = study.ask()
        params = suggest(trial, spec.space)
        assert 1e-4 <= params["lr"] <= 0.3 and 0.5 <= params["momentum"] <= 0.95
        assert 8 <= params["hidden1"] <= 32 and isinstance(params["hidden1"], int)
        assert 8 <= params["hidden2"] <= 16
        assert "head" not in params and "batch_size" not in params  # fixed, not searched
        schedule = params["schedule"]
        schedules.add(schedule)
        assert ("gamma" in params) == (schedule in ("tutorial", "step", "exponential"))
        assert ("step_every" in params) == (schedule in ("tutorial", "step"))
        config = config_from_params(spec.space, params, epochs=2, seed=5)
        assert config.head == "logits" and config.batch_size == 64 and config.seed == 5
        study.tell(trial, 0.0)
    assert schedules == {"tutorial", "step", "exponential", "cosine", "none"}


def test_each_range_is_asked_of_optuna_on_the_scale_the_spec_gives() -> None:
    # A log-scaled width searched linearly spends most trials on the widest layers: the draws'
    # bounds alone cannot tell, the distribution Optuna records does.
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    suggest(trial, tiny_spec(space={"schedule": "step"}).space)
    assert trial.distributions == {
        "lr": FloatDistribution(1e-4, 0.3, log=True),
        "momentum": FloatDistribution(0.5, 0.95),
        "hidden1": IntDistribution(8, 32, log=True),
        "hidden2": IntDistribution(8, 16),
        "gamma": FloatDistribution(0.5, 0.99),
        "step_every": IntDistribution(1, 3),
    }


def test_baseline_params_leave_out_a_category_the_space_lacks() -> None:
    spec = tiny_spec(
        space={"schedule": {"choices": ["step", "cosine"]}, "lr": {"low": 0.05, "high": 0.3}}
    )
    params = baseline_params(spec.space)
    assert "schedule" not in params
    assert params["lr"] == 0.01  # outside the range, still enqueued: Optuna 5 accepts it
    assert params["gamma"] == 0.9 and params["step_every"] == 5


def test_the_notes_name_a_tutorial_value_missing_from_the_choices_or_fixed_otherwise() -> None:
    spec = tiny_spec(space={"schedule": {"choices": ["step", "cosine"]}})
    assert baseline_outside_space(spec.space) == [
        "hidden1=300, outside [8, 32]",
        "hidden2=100, outside [8, 16]",
        "head='softmax', where the space fixes 'logits'",
        "schedule='tutorial', not among the choices ['step', 'cosine']",
        "step_every=5, outside [1, 3]",
    ]
    notes = setup_notes(spec)
    runs = "baseline (trial 0) runs the tutorial's"
    assert f"{runs} head='softmax', where the space fixes 'logits'" in notes
    assert f"{runs} schedule='tutorial', not among the choices ['step', 'cosine']" in notes
    # Among the choices, or fixed at the tutorial's own value: nothing to say.
    inside = tiny_spec(
        space={
            "schedule": {"choices": ["step", "tutorial"]},
            "head": "softmax",
            "hidden1": {"low": 8, "high": 512},
            "hidden2": {"low": 8, "high": 128},
            "step_every": {"low": 1, "high": 5},
        }
    )
    assert baseline_outside_space(inside.space) == []


def test_trial_zero_is_the_tutorials_config_even_outside_the_space(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(space={"lr": {"low": 0.05, "high": 0.3}, "hidden1": {"low": 8, "high": 16}})
    notes = setup_notes(spec)
    assert "baseline (trial 0) runs the tutorial's lr=0.01, outside [0.05, 0.3]" in notes
    assert "baseline (trial 0) runs the tutorial's hidden1=300, outside [8, 16]" in notes
    study = run(spec, tmp_path, 2, mnist=mnist)
    t0 = study.trials[0]
    assert t0.user_attrs["is_baseline"] is True
    assert t0.user_attrs["config"] == TrainConfig(epochs=2, seed=0).to_dict()
    assert t0.params["lr"] == 0.01 and t0.params["hidden1"] == 300
    assert t0.state == TrialState.COMPLETE
    assert study.trials[1].user_attrs["is_baseline"] is False
    assert all(set(t.user_attrs) == USER_ATTRS for t in study.trials)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return True


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_trial_is_never_pruned_after_its_last_epoch_nor_the_baseline_at_all(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epochs: int
) -> None:
    monkeypatch.setattr(hpo.study_setup, "make_pruner", lambda spec: _AlwaysPrune())
    study = run(tiny_spec(epochs=epochs), tmp_path, 3, mnist=mnist)
    assert study.trials[0].user_attrs["is_baseline"]
    if epochs == 1:  # its only epoch is its last: a finished result, kept
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    else:  # the baseline runs on: pruned, it would be gone for good, and the comparison with it
        assert study.trials[0].state == TrialState.COMPLETE
        assert sorted(study.trials[0].intermediate_values) == [0, 1]  # reported all the same
        assert [t.user_attrs["reason"] for t in study.trials[1:]] == ["pruned at epoch 1 of 2"] * 2


@pytest.mark.parametrize(
    ("objective", "head", "warned"),
    [
        ("val_loss", "logits", True),  # the default space's head, the baseline's softmax
        ("val_loss", {"choices": ["softmax", "logits"]}, True),
        ("val_loss", "softmax", False),  # one head, one scale
        ("val_acc", "logits", False),  # accuracy compares any heads
    ],
)
def test_a_loss_objective_across_heads_is_flagged_at_start(
    objective: str, head: Any, warned: bool
) -> None:
    notes = setup_notes(tiny_spec(objective=objective, space={"head": head}))
    assert any("do not compare by loss" in n for n in notes) == warned


@pytest.mark.parametrize(
    "pruner",
    [{"name": "median", "n_startup_trials": 0, "n_warmup_steps": w} for w in (0, 2, 3, 4)]
    + [{"name": "hyperband", "min_resource": r} for r in (1, 2, 3, 4)]
    + [
        {"name": "successive_halving", "min_resource": r, "min_early_stopping_rate": rate}
        for r, rate in ((1, 0), (1, 1), (3, 0), (1, 2))
    ],
)
def test_a_pruner_that_can_never_prune_is_flagged_as_optuna_decides(
    pruner: dict[str, Any],
) -> None:
    """The note must say "never" exactly when Optuna's own pruner cannot prune a hopeless trial
    at any epoch but the last (never pruned): 4 epochs, steps 0-2."""
    spec = tiny_spec(epochs=4, pruner=pruner)
    study = optuna.create_study(study_name="s", direction="maximize", pruner=make_pruner(spec))
    for n in range(30):  # good trials at every step, in every Hyperband bracket
        trial = study.ask()
        for step in range(spec.epochs):
            trial.report(0.9 + n / 1000, step)
            assert not trial.should_prune()  # which also files it in its rung (Hyperband)
        study.tell(trial, 0.9 + n / 1000)
    pruned = False
    for _ in range(12):  # Hyperband puts trials in brackets whose first checks differ
        hopeless = study.ask()
        for step in range(spec.epochs - 1):
            hopeless.report(0.1, step)
            pruned = pruned or hopeless.should_prune()
        study.tell(hopeless, 0.1)
    flagged = any("no trial can be pruned" in n for n in setup_notes(spec))
    assert flagged == (not pruned), (pruner, setup_notes(spec))


def test_same_spec_and_seed_give_the_same_trials(mnist: Mnist, tmp_path: Path) -> None:
    spec = tiny_spec(trials=5)
    a = run(spec, tmp_path / "a", 5, mnist=mnist).trials
    b = run(spec, tmp_path / "b", 5, mnist=mnist).trials
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == [t.value for t in b]
    assert [t.user_attrs["curves"]["val_loss"] for t in a] == [
        t.user_attrs["curves"]["val_loss"] for t in b
    ]
    assert len({repr(t.params) for t in a}) == 5  # the sampler did explore
    assert [t.user_attrs["seed"] for t in a] == [training_seed(0, n) for n in range(5)]


def test_each_trial_records_the_sampler_and_pruner_that_ran_it_across_a_resume(
    mnist: Mnist, tmp_path: Path
) -> None:
    first = tiny_spec(sampler={"name": "random"})
    run(first, tmp_path, 2, mnist=mnist)
    second = tiny_spec(pruner={"name": "median", "n_startup_trials": 1})
    study = run(second, tmp_path, 3, mnist=mnist)  # resumed with other algorithms: allowed
    recorded = [(t.user_attrs["sampler"], t.user_attrs["pruner"]) for t in study.trials]
    old = (first.sampler.to_dict(), first.pruner.to_dict())
    assert recorded == [old, old, (second.sampler.to_dict(), second.pruner.to_dict())]
    assert recorded[2][0]["name"] == "tpe" and recorded[2][1]["n_startup_trials"] == 1
    assert study.user_attrs["sampler"] == "random"  # the study's: what it was made with


def test_a_different_seed_samples_differently(mnist: Mnist, tmp_path: Path) -> None:
    a = run(tiny_spec(seed=0), tmp_path / "a", 3, mnist=mnist).trials
    b = run(tiny_spec(seed=1), tmp_path / "b", 3, mnist=mnist).trials
    assert a[0].params == b[0].params  # both baselines
    assert a[1].params != b[1].params
    # Each trial trains with study seed * 100,003 + its draw: no two studies share a seed.
    assert [t.user_attrs["seed"] for t in a] == [0, 1, 2]
    assert [t.user_attrs["seed"] for t in b] == [100_003, 100_004, 100_005]
    assert [t.user_attrs["config"]["seed"] for t in b] == [100_003, 100_004, 100_005]


@pytest.mark.parametrize(("name", "package"), [("qmc", "scipy"), ("cmaes", "cmaes")])
def test_a_sampler_whose_package_is_missing_is_refused_before_the_study_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, package: str
) -> None:
    # Optuna imports them at the first draw: trial 1 failed with a traceback.
    monkeypatch.setitem(sys.modules, package, None)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    with pytest.raises(
        HpoError, match=f"sampler {name} needs .*{package}.*: pip install {package}"
    ):
        open_study(tiny_spec(sampler={"name": name}), storage, "s")
    assert optuna.get_all_study_names(storage) == []


def test_each_sampler_name_builds_optunas_sampler_with_the_specs_settings() -> None:
    def inner(sampler: dict[str, Any]) -> Any:  # Optuna's own sampler, inside hpo's wrapper
        wrapper = make_sampler(tiny_spec(sampler=sampler))
        assert isinstance(wrapper, TrialSeededSampler)
        return wrapper._inner

    tpe = inner({"name": "tpe", "n_startup_trials": 3})
    assert type(tpe) is optuna.samplers.TPESampler
    assert (tpe._n_startup_trials, tpe._multivariate, tpe._group, tpe._constant_liar) == (
        3, True, True, True,
    )  # fmt: skip
    flat = inner({"name": "tpe", "multivariate": False})
    assert (flat._n_startup_trials, flat._multivariate, flat._group) == (10, False, False)
    assert type(inner({"name": "random"})) is optuna.samplers.RandomSampler
    qmc = inner({"name": "qmc", "qmc_type": "halton"})
    assert type(qmc) is optuna.samplers.QMCSampler and qmc._qmc_type == "halton"
    assert inner({"name": "qmc"})._qmc_type == "sobol"
    cma = inner({"name": "cmaes", "n_startup_trials": 2})
    assert isinstance(cma, optuna.samplers.CmaEsSampler) and cma._n_startup_trials == 2
    assert cma._warn_independent_sampling is False  # setup_notes says it instead


def _cma_note_names(spec: StudySpec) -> list[str] | None:
    """The parameters the cmaes note names, None without the note."""
    notes = [n for n in setup_notes(spec) if n.startswith("sampler cmaes: ")]
    if not notes:
        return None
    (note,) = notes
    return note.removeprefix("sampler cmaes: ").split(" sampled")[0].split(", ")


@pytest.mark.parametrize(
    ("space", "named"),
    [
        # TINY_SPACE: five schedules, two of them use neither conditional; the head fixed.
        ({}, ["schedule", "gamma", "step_every"]),
        ({"head": {"choices": ["softmax", "logits"]}}, ["head", "schedule", "gamma", "step_every"]),
        # Both schedules use gamma, only one step_every.
        ({"schedule": {"choices": ["step", "exponential"]}}, ["schedule", "step_every"]),
        # A fixed schedule: every trial has both conditionals, CMA-ES models them.
        ({"schedule": "step", "head": {"choices": ["softmax", "logits"]}}, ["head"]),
        ({"schedule": "step"}, None),  # numbers only: no note
        # One choice is no draw at all (Optuna takes it without asking the sampler).
        ({"schedule": "step", "head": {"choices": ["logits"]}}, None),
    ],
)
def test_the_cmaes_note_names_the_parameters_it_samples_at_random(
    space: dict[str, Any], named: list[str] | None
) -> None:
    spec = tiny_spec(space=space, sampler={"name": "cmaes"})
    assert _cma_note_names(spec) == named
    assert _cma_note_names(tiny_spec(space=space)) is None  # tpe models them all


@pytest.mark.filterwarnings("ignore:Fixed parameter")  # the baseline's, outside the tiny space
def test_the_params_the_cmaes_note_names_are_those_optuna_samples_at_random(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = tiny_spec(sampler={"name": "cmaes", "n_startup_trials": 1})
    at_random: set[str] = set()
    real = optuna.samplers.RandomSampler.sample_independent

    def spy(self: Any, study: Any, trial: FrozenTrial, name: str, dist: Any) -> Any:
        if trial.number >= 1:  # after the startup trial, the baseline
            at_random.add(name)
        return real(self, study, trial, name, dist)

    monkeypatch.setattr(optuna.samplers.RandomSampler, "sample_independent", spy)
    study = optuna.create_study(sampler=make_sampler(spec))
    study.enqueue_trial(baseline_params(spec.space))

    def objective(trial: optuna.Trial) -> float:
        return sum(v for v in suggest(trial, spec.space).values() if isinstance(v, float))

    study.optimize(objective, n_trials=20)
    assert {t.system_attrs.get("cma:generation") for t in study.trials[1:]} >= {0, 1}
    assert sorted(at_random) == sorted(_cma_note_names(spec) or [])


def test_cma_es_goes_on_modelling_when_a_later_trial_lacks_what_its_first_generation_had() -> None:
    # Optuna's CmaEsSampler models the numbers common to the finished trials: here the first
    # generation all used the step schedule (gamma, step_every), and once a cosine trial
    # finishes, that set shrinks below the stored optimizer's and plain CmaEsSampler turns to
    # random search for good. hpo's keeps the numbers every schedule has from the start.
    spec = tiny_spec(
        space={"schedule": {"choices": ["step", "cosine"]}},
        sampler={"name": "cmaes", "n_startup_trials": 1},
    )
    study = optuna.create_study(sampler=make_sampler(spec))
    for _ in range(12):
        study.enqueue_trial({"schedule": "step"})

    def objective(trial: optuna.Trial) -> float:
        return sum(v for v in suggest(trial, spec.space).values() if isinstance(v, float))

    study.optimize(objective, n_trials=40)
    assert {t.params["schedule"] for t in study.trials[12:]} == {"step", "cosine"}
    generations = [t.system_attrs.get("cma:generation") for t in study.trials]
    assert None not in generations[1:]  # every trial after the startup one is CMA-ES's
    assert max(g for g in generations if g is not None) >= 3
    searched = make_sampler(spec).infer_relative_search_space(study, study.trials[-1])
    assert sorted(searched) == ["hidden1", "hidden2", "lr", "momentum"]


def test_a_qmc_study_walks_the_sobol_sequence_from_the_corner_to_the_centre(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(epochs=1, sampler={"name": "qmc"})
    study = run(spec, tmp_path, 4, mnist=mnist)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # Sobol's first points, unscrambled: 0 then 0.5 in every dimension of the space.
    assert {k: study.trials[1].params[k] for k in ("lr", "momentum", "hidden1", "hidden2")} == {
        "lr": pytest.approx(1e-4), "momentum": 0.5, "hidden1": 8, "hidden2": 8,
    }  # fmt: skip
    centre = study.trials[2].params
    assert centre["lr"] == pytest.approx(math.sqrt(1e-4 * 0.3))  # the middle of a log scale
    assert (centre["momentum"], centre["hidden1"], centre["hidden2"]) == (
        pytest.approx(0.725), 16, 12,
    )  # fmt: skip
    drawn = study._storage.get_study_system_attrs(study._study_id)
    assert [v for k, v in drawn.items() if k.startswith("qmc:")] == [2]  # trials 1-3: 0, 1, 2


def test_a_cmaes_rerun_joins_a_generation_only_where_its_first_attempt_had_one() -> None:
    """With --jobs, a startup trial lost while the others finished the startup is re-run once
    CMA-ES has begun: a run straight through drew it at random, outside any generation."""
    spec = tiny_spec(sampler={"name": "cmaes", "n_startup_trials": 2})
    study = optuna.create_study(sampler=make_sampler(spec), direction="maximize")

    def rerun_of(first: optuna.Trial) -> dict[str, Any]:
        study.tell(first, state=TrialState.FAIL)
        study.enqueue_trial(first.params, user_attrs={"origin": first.number})
        again = study.ask()
        suggest(again, spec.space)
        study.tell(again, 0.5)
        return study.trials[again.number].system_attrs

    startup = study.ask()
    suggest(startup, spec.space)
    for value in (0.6, 0.7):  # the other workers' trials finish the startup meanwhile
        other = study.ask()
        suggest(other, spec.space)
        study.tell(other, value)
    assert "cma:generation" not in rerun_of(startup)
    drawn = study.ask()
    suggest(drawn, spec.space)
    assert "cma:generation" in study.trials[drawn.number].system_attrs
    assert rerun_of(drawn)["cma:generation"] == 0  # its first attempt's generation


def test_a_cmaes_study_runs_its_trials_from_cma_es_after_the_startup(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(epochs=1, sampler={"name": "cmaes", "n_startup_trials": 1})
    study = run(spec, tmp_path, 4, mnist=mnist)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # The baseline (queued, the one startup trial) is not CMA-ES's; the rest are its first
    # generation's.
    assert [t.system_attrs.get("cma:generation") for t in study.trials] == [None, 0, 0, 0]
    assert len({repr(t.params) for t in study.trials}) == 4


def test_pruning_stops_hopeless_trials_and_keeps_their_cut_curves(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(
        epochs=4,
        space={"lr": {"low": 1e-6, "high": 0.3, "log": True}},
        sampler={"name": "random"},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    )
    study = run(spec, tmp_path, 8, mnist=mnist, compile=None)  # compiled: the CPU's package
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "a median pruner with one startup trial prunes someone among 8"
    for t in pruned:
        # how it trained, recorded though fit never returned a result to the pruned trial
        assert t.user_attrs["compiled"] and t.user_attrs["aot"], t.number
        run_epochs = t.user_attrs["epochs_run"]
        assert run_epochs < 4
        assert all(len(t.user_attrs["curves"][k]) == run_epochs for k in CURVE_KEYS)
        assert len(t.intermediate_values) == run_epochs
        assert t.user_attrs["reason"] == f"pruned at epoch {run_epochs} of 4"
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 8
    # TensorBoard's own reader: one point per epoch actually run, steps 0..n-1.
    for t in study.trials:
        events = EventAccumulator(str(trial_dir(tmp_path / "runs", "s", t.number)))
        events.Reload()
        for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
            steps = [e.step for e in events.Scalars(tag)]
            assert steps == list(range(t.user_attrs["epochs_run"])), (t.number, tag)
        val = [e.value for e in events.Scalars("val/acc")]
        assert val == pytest.approx(t.user_attrs["curves"]["val_acc"])
        assert events.summary_metadata["_hparams_/session_start_info"] is not None


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(
        sampler={"name": "random"}, space={"lr": {"low": 1e-2, "high": 1e34, "log": True}}
    )
    study = run(spec, tmp_path, 5, mnist=mnist)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "lr up to 1e34 diverges for some trials"
    for t in failed:
        assert t.user_attrs["reason"].startswith("diverged: train loss nan at epoch 1 of 2")
        assert t.user_attrs["curves"]["train_loss"] == [None]  # NaN stored as null
        events = EventAccumulator(str(trial_dir(tmp_path / "runs", "s", t.number)))
        events.Reload()  # TensorBoard has the epoch it diverged in, as the curves do
        assert [e.step for e in events.Scalars("val/acc")] == [0]
        assert math.isnan(events.Scalars("train/loss")[0].value)
    assert any(t.state == TrialState.COMPLETE and t.number > failed[0].number for t in study.trials)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 5


def test_a_trial_whose_validation_loss_alone_went_nan_fails_naming_that_loss(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its training loss finite at the end, the evaluation's NaN: the reason must name the
    loss that diverged, not quote a finite training loss as the divergence."""
    real_fit = hpo.trial.fit
    calls: list[int] = []

    def fit(*args: Any, **kwargs: Any) -> FitResult:
        result = real_fit(*args, **kwargs)
        calls.append(len(calls))
        if len(calls) > 1:
            return result
        last = dataclasses.replace(result.final, eval_loss=math.nan)
        return dataclasses.replace(result, epochs=(*result.epochs[:-1], last), status="diverged")

    monkeypatch.setattr(hpo.trial, "fit", fit)
    study = run(tiny_spec(), tmp_path, 1, mnist=mnist, runs_dir=None)
    first = study.trials[0]
    assert first.state == TrialState.FAIL
    assert math.isfinite(first.user_attrs["curves"]["train_loss"][-1])
    assert first.user_attrs["curves"]["val_loss"][-1] is None  # NaN stored as null
    assert first.user_attrs["reason"] == "diverged: validation loss nan at epoch 2 of 2"
    assert [t.state for t in study.trials[1:]] == [TrialState.COMPLETE]  # the study went on


def wrapped(cause: BaseException) -> RuntimeError:
    """``cause`` re-raised inside another error, as torch.compile's backends do."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError(f"BackendCompilerFailed: {exc}") from exc
    except RuntimeError as outer:
        return outer


def test_a_rerun_that_meets_its_target_records_it_and_one_past_it_does_not(
    mnist: Mnist, tmp_path: Path
) -> None:
    """The report's "N of target" is the last run's --trials: a rerun asking exactly what the
    study has finished (after a run that asked more and was stopped) is that run; one asking
    fewer than the study has is not a run of it (it had nothing to do)."""
    study = run(tiny_spec(), tmp_path, 3, mnist=mnist, runs_dir=None)
    assert study.user_attrs[TARGET_ATTR] == 3
    study.set_user_attr(TARGET_ATTR, 5)  # a run asked 5 and was stopped at 3
    assert run(tiny_spec(), tmp_path, 3, mnist=mnist, runs_dir=None).user_attrs[TARGET_ATTR] == 3
    assert run(tiny_spec(), tmp_path, 2, mnist=mnist, runs_dir=None).user_attrs[TARGET_ATTR] == 3


def test_a_trial_out_of_memory_fails_with_its_reason_and_the_study_goes_on(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configuration too wide for the device (or for several workers on one GPU) is that
    trial's failure, as a divergence is: it was a traceback ending the run, at every rerun."""
    refusals = {  # CUDA's (MPS's too) and the CPU allocator's, as torch raises them
        1: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 24.00 GiB"),
        3: RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                        "can't allocate memory: you tried to allocate 6272000000000 bytes."),
        5: wrapped(torch.OutOfMemoryError("CUDA out of memory.")),  # as a compiler re-raises it
    }  # fmt: skip
    fit = hpo.trial.fit

    def allocating(config: Any, *args: Any, **kw: Any) -> Any:
        if (number := len(calls)) in refusals:
            calls.append(number)
            raise refusals[number]
        calls.append(number)
        return fit(config, *args, **kw)

    calls: list[int] = []
    monkeypatch.setattr(hpo.trial, "fit", allocating)
    study = run(tiny_spec(), tmp_path, 4, mnist=mnist, runs_dir=None)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL] * 3 + [TrialState.COMPLETE]
    assert study.trials[5].user_attrs["reason"] == (
        "out of memory on cpu: BackendCompilerFailed: CUDA out of memory."
    )
    assert study.trials[1].user_attrs["reason"] == (
        "out of memory on cpu: CUDA out of memory. Tried to allocate 24.00 GiB"
    )
    assert (
        study.trials[3]
        .user_attrs["reason"]
        .startswith(
            "out of memory on cpu: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
        )
    )
    # Any other error is not the configuration's: it stops the run, the trial failed with it.
    refusals[len(calls)] = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run(tiny_spec(), tmp_path, 5, mnist=mnist, runs_dir=None)
    last = optuna.load_study(study_name="s", storage=study._storage).trials[-1]
    assert last.state == TrialState.FAIL
    assert (
        last.user_attrs["reason"]
        == "error: RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    )


def test_ten_failures_in_a_row_stop_the_run_with_a_clear_error(
    mnist: Mnist, tmp_path: Path
) -> None:
    spec = tiny_spec(
        sampler={"name": "random"}, space={"lr": {"low": 1e33, "high": 1e34, "log": True}}
    )
    with pytest.raises(HpoError, match=r"10 trials in a row failed .*diverged"):
        run(spec, tmp_path, 3, mnist=mnist)


@pytest.mark.parametrize(
    ("fails_at", "stops"),
    [
        (lambda n: n % 10 != 0, False),  # 9 in a row, then a success: 18 failures, no stop
        (lambda n: n >= 2, True),  # the tenth in a row stops it, whatever succeeded before
    ],
    ids=["interleaved", "in-a-row"],
)
def test_only_failures_in_a_row_stop_the_run_not_failures_in_total(
    mnist: Mnist,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fails_at: Any,
    stops: bool,
) -> None:
    def diverges_at_will(trial: optuna.Trial, ctx: hpo.trial.TrialContext) -> float:
        if fails_at(trial.number):
            trial.set_user_attr("reason", "diverged (told)")
            raise hpo.trial.Diverged("diverged (told)")
        return 0.5

    monkeypatch.setattr(hpo.search, "run_trial", diverges_at_will)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    if stops:
        with pytest.raises(HpoError, match=r"^10 trials in a row failed \(last: trial 11,"):
            run_study(tiny_spec(), storage, "s", 3, CPU, mnist, Progress(), runs_dir=None)
    else:
        run_study(tiny_spec(), storage, "s", 3, CPU, mnist, Progress(), runs_dir=None)
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    if stops:  # stopped at the tenth failure in a row: no eleventh asked
        assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 10
    else:
        assert states.count(TrialState.FAIL) == 18 and states.count(TrialState.COMPLETE) == 3


def test_ctrl_c_fails_the_running_trial_and_a_rerun_repeats_its_params(
    mnist: Mnist, tmp_path: Path
) -> None:
    class InterruptAt(Progress):
        def epoch(self, number: int, epoch: int) -> None:
            if number == 2:
                raise KeyboardInterrupt

    spec = tiny_spec()
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, storage, "s", 4, CPU, mnist, InterruptAt(), runs_dir=None, compile=False)
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials[:3]] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert study.trials[2].user_attrs["reason"].startswith("interrupted")
    run_study(spec, storage, "s", 4, CPU, mnist, Progress(), runs_dir=None, compile=False)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    again = trials[3]  # the queued re-run comes first
    assert again.params == trials[2].params and again.user_attrs["origin"] == 2
    assert again.user_attrs["seed"] == trials[2].user_attrs["seed"] == training_seed(0, 2)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


HYPERBAND = {"name": "hyperband", "min_resource": 1, "reduction_factor": 2}


@pytest.mark.parametrize(
    ("pruner", "epochs", "values"),
    [
        # Kept in the top half of 4 (0.95, 0.94); pruned if the attempt's 0.95 counts too.
        ({"name": "successive_halving", "reduction_factor": 2}, 4, [0.90, 0.93]),
        # One bracket (reduction 3 over 2 epochs): the top third of 6.
        ({"name": "hyperband", "reduction_factor": 3}, 2, [0.90, 0.93, 0.91, 0.92]),
    ],
    ids=["successive_halving", "hyperband"],
)
def test_a_replaced_attempts_rung_value_does_not_count_beside_its_reruns(
    pruner: dict[str, Any], epochs: int, values: list[float]
) -> None:
    """Trial 1 was interrupted after its first rung and its parameters run again as trial 3:
    the last trial must be ranked as in a run straight through, against one 0.95, not two."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(
        tiny_spec(epochs=epochs, pruner={**pruner, "min_resource": 1})))  # fmt: skip
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}
    told: list[tuple[TrialState, float, dict[str, int]]] = [
        (TrialState.COMPLETE, values[0], {}),
        (TrialState.FAIL, 0.95, {}),
    ]
    told += [(TrialState.COMPLETE, v, {}) for v in values[1:]]
    told += [(TrialState.COMPLETE, 0.95, {"origin": 1})]  # the re-run, as lost_trials queues it
    for n, (state, value, attrs) in enumerate(told):
        study.add_trial(
            optuna.trial.create_trial(
                state=state, value=None if state == TrialState.FAIL else value,
                params={"lr": 0.01}, distributions=lr, intermediate_values={0: value, 1: value},
                user_attrs={**attrs, "seed": training_seed(0, n)},
                system_attrs={"completed_rung_0": value},
            )
        )  # fmt: skip
    trial = study.ask(lr)
    trial.set_user_attr("seed", training_seed(0, len(told) - 1))
    trial.report(0.94, 0)
    trial.report(0.94, 1)
    assert not trial.should_prune()


@pytest.mark.parametrize(
    ("spec", "n", "at"),
    [
        (tiny_spec(sampler={"name": "random"}), 5, 1),
        # Hyperband's brackets (which decide what is pruned) must not follow them either
        (tiny_spec(epochs=4, pruner=HYPERBAND), 10, 1),
        # CMA-ES seeds its asks from trial numbers, and keeps generations: a trial of the first
        # (8 trials in 4 dimensions), so that the second is drawn after the resume.
        (tiny_spec(sampler={"name": "cmaes", "n_startup_trials": 2}), 13, 4),
    ],
    ids=["random", "tpe-hyperband", "cmaes"],
)
def test_a_study_resumed_after_an_interrupt_or_renamed_draws_what_one_run_straight_through_draws(
    spec: StudySpec, n: int, at: int, mnist: Mnist, tmp_path: Path
) -> None:
    """The re-run of the interrupted trial takes a trial number of its own, so every later
    trial's number is one higher than in a run straight through: their sampler and training
    seeds must not follow the numbers, nor the study's name."""

    class InterruptAt(Progress):
        def epoch(self, number: int, epoch: int) -> None:
            if number == at:
                raise KeyboardInterrupt

    straight = run(spec, tmp_path / "a", n, mnist=mnist).trials
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, storage, "t", n, CPU, mnist, InterruptAt(), runs_dir=None, compile=False)
    run_study(spec, storage, "t", n, CPU, mnist, Progress(), runs_dir=None, compile=False)
    resumed = optuna.load_study(study_name="t", storage=storage).trials
    assert [t.state for t in resumed].count(TrialState.FAIL) == 1  # the interrupted attempt
    kept = [t for t in resumed if t.state != TrialState.FAIL]
    # numbers shifted by the re-run (it comes first when the run resumes)
    assert [t.number for t in kept] == [*range(at), *range(at + 1, n + 1)]

    def drawn(trials: list[FrozenTrial]) -> list[tuple[object, ...]]:
        return [(t.params, t.value, t.user_attrs["seed"], t.state) for t in trials]

    assert drawn(kept) == drawn(straight)
    if spec.pruner.name == "hyperband":  # it did prune, so the brackets mattered
        assert {t.state for t in straight} == {TrialState.COMPLETE, TrialState.PRUNED}


def test_a_study_with_another_space_is_refused_and_left_untouched(
    mnist: Mnist, tmp_path: Path
) -> None:
    run(tiny_spec(), tmp_path, 2, mnist=mnist)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    before = optuna.load_study(study_name="s", storage=storage)
    trials, attrs = before.trials, before.user_attrs
    for changed in (
        tiny_spec(space={"hidden2": {"low": 8, "high": 17}}),
        tiny_spec(epochs=3),
        tiny_spec(precision="bf16"),
    ):
        with pytest.raises(StudyMismatchError, match="Nothing was changed"):
            open_study(changed, storage, "s")
    after = optuna.load_study(study_name="s", storage=storage)
    assert after.trials == trials and after.user_attrs == attrs


def test_a_resumed_run_that_will_round_otherwise_than_the_study_says_so(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}
    runs: list[tuple[Precision, bool]] = [("bf16", True), ("bf16", True), ("fp32", False)]
    for precision, compiled in runs:
        config = TrainConfig(precision=precision).to_dict()
        attrs = {"config": config, "compiled": compiled}
        study.add_trial(optuna.trial.create_trial(
            value=0.9, params={"lr": 0.01}, distributions=lr, user_attrs=attrs))  # fmt: skip
    assert resume_notes(storage, "s", auto=None, eager=False) == []  # a precision named: alike
    assert resume_notes(storage, "s", auto={"bf16", "fp32"}, eager=False) == []
    (fp32,) = resume_notes(storage, "s", auto={"fp32"}, eager=False)
    assert fp32.startswith("precision auto trains in fp32 here, and 2 of the study's trials ")
    (eager,) = resume_notes(storage, "s", auto=None, eager=True)
    assert eager.startswith("--no-compile trains eagerly, and 2 of the study's trials trained")
    # The other way: trials eager by --no-compile (not by fallback), a run that compiles.
    assert resume_notes(storage, "s", auto=None, eager=False, compiles=True) == []
    for no_compile in (True, False):  # False: eager by default (MPS) or a fallback, no choice
        attrs = {"config": config, "compiled": False, "no_compile": no_compile}
        study.add_trial(optuna.trial.create_trial(
            value=0.9, params={"lr": 0.01}, distributions=lr, user_attrs=attrs))  # fmt: skip
    (compiles,) = resume_notes(storage, "s", auto=None, eager=False, compiles=True)
    assert compiles.startswith("this run compiles its training steps, and 1 of the study's")
    assert compiles.endswith("Pass --no-compile to go on as they did")
    assert resume_notes(storage, "s", auto=None, eager=False, compiles=False) == []


def test_an_empty_study_of_another_direction_is_refused_naming_both(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    optuna.create_study(study_name="s", storage=storage, direction="minimize")  # another tool's
    said = r"no hpo setup yet .* is set to minimize its objective; this spec's is to maximize"
    with pytest.raises(StudyMismatchError, match=said):
        check_study(tiny_spec(), storage, "s")
    optuna.create_study(study_name="two", storage=storage, directions=["maximize", "minimize"])
    with pytest.raises(StudyMismatchError, match="has 2 objectives, and hpo's studies one"):
        check_study(tiny_spec(), storage, "two")  # a RuntimeError traceback before


def test_a_run_without_heartbeat_takes_that_of_a_study_made_after_it_looked(
    tmp_path: Path,
) -> None:
    """Another process made the study, beating every 3 s, after this one read no study (and
    so the default): without --heartbeat it takes the study's; with one it is refused."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    open_study(tiny_spec(), open_storage(url, heartbeat_interval=3), "s")
    given = open_storage(url, heartbeat_interval=10)
    with pytest.raises(StudyMismatchError, match="its trials beat every 3 s"):
        open_study(tiny_spec(), given, "s")
    assert given.get_heartbeat_interval() == 10
    late = open_storage(url, heartbeat_interval=10)
    assert open_study(tiny_spec(), late, "s", adopt_heartbeat=True).user_attrs["heartbeat"] == 3
    assert (late.get_heartbeat_interval(), late.grace_period) == (3, 3 * GRACE_FACTOR)


def test_a_study_made_before_precisions_existed_is_taken_as_fp32(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = open_study(tiny_spec(), storage, "s")
    older = {k: v for k, v in study.user_attrs["spec"].items() if k != "precision"}
    study.set_user_attr("spec", older)
    assert check_study(tiny_spec(precision="fp32"), storage, "s")  # resumes
    said = r"precision is 'bf16', the study has 'fp32' \(--precision fp32 matches it\)"
    with pytest.raises(StudyMismatchError, match=said):
        check_study(tiny_spec(precision="bf16"), storage, "s")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_trains_every_trial_in_bf16_only_where_the_cpu_has_it(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(hpo.device, "native_bf16", lambda device: native)
    study = run(tiny_spec(precision="auto"), tmp_path, 2, mnist=mnist)
    precisions = [t.user_attrs["config"]["precision"] for t in study.trials]
    assert precisions == ["bf16" if native else "fp32"] * 2  # the baseline (trial 0) too
    assert study.trials[0].user_attrs["is_baseline"]


def test_a_study_whose_creator_died_half_way_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed after queuing the baseline, before the last attribute: the next run must finish the
    # job (not take the study for whole and never run a baseline), and queue one baseline.
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    real = optuna.Study.set_user_attr

    def killed_at_the_seed(study: optuna.Study, key: str, value: Any) -> None:
        if key == "seed":
            raise KeyboardInterrupt
        real(study, key, value)

    monkeypatch.setattr(optuna.Study, "set_user_attr", killed_at_the_seed)
    with pytest.raises(KeyboardInterrupt):
        open_study(tiny_spec(), storage, "s")
    monkeypatch.setattr(optuna.Study, "set_user_attr", real)
    monkeypatch.setattr(hpo.study_setup, "CREATION_WAIT_S", 0.5)  # its creator is gone for good
    study = open_study(tiny_spec(), storage, "s")
    assert study.user_attrs["spec_hash"] == tiny_spec().space.digest()
    (baseline,) = study.trials
    assert baseline.state == TrialState.WAITING and baseline.user_attrs["is_baseline"]
    assert open_study(tiny_spec(), storage, "s").trials == study.trials  # whole now: resumed


def test_a_second_process_waits_for_the_study_another_is_creating(tmp_path: Path) -> None:
    # Two machines start the same study at once: the second must not ask for trial 0 before the
    # first has queued the baseline there, nor queue a baseline of its own.
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    first = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    beat = storage.get_heartbeat_interval()
    finishing = threading.Timer(1.0, hpo.study_setup._initialise, (first, tiny_spec(), beat))
    finishing.start()
    began = time.monotonic()
    study = open_study(tiny_spec(), storage, "s")
    finishing.join()
    # Waited for the creator, not the CREATION_WAIT_S after which it would finish the job.
    assert 1.0 <= time.monotonic() - began < hpo.study_setup.CREATION_WAIT_S
    assert len(study.trials) == 1 and study.trials[0].user_attrs["is_baseline"]
    # One being created for the other direction is refused at once, not waited for.
    optuna.create_study(study_name="loss", storage=storage, direction="minimize")
    with pytest.raises(StudyMismatchError, match="to minimize its objective"):
        open_study(tiny_spec(), storage, "loss")


def test_finalize_retrains_best_and_baseline_on_the_full_set(mnist: Mnist, tmp_path: Path) -> None:
    study = run(tiny_spec(), tmp_path, 3, mnist=mnist)
    final = finalize(study, mnist, CPU, compile=False)
    stored = optuna.load_study(study_name="s", storage=study._storage).user_attrs["final"]
    assert stored == final and "finalized_at" in final
    keys = {
        "trial",
        "config",
        "val_acc",
        "test_acc",
        "test_loss",
        "train_seconds",
        "seconds_per_epoch",
        "param_count",
        "device",
    }
    best, baseline = final["best"], final["baseline"]
    assert best is not None and baseline is not None
    assert baseline["trial"] == 0 and keys <= set(baseline)
    assert best["trial"] == study.best_trial.number  # Optuna's own reading of the study
    # The score of that configuration trained on the whole training set (1,500 images here;
    # CPU training is deterministic), on the 300 test images: k / 300 exactly.
    config = TrainConfig.from_dict(study.trials[best["trial"]].user_attrs["config"])
    assert best["test_acc"] == trained(config, mnist, CPU, None, compile=False).test_acc
    assert best["test_acc"] * 300 == pytest.approx(round(best["test_acc"] * 300), abs=1e-9)
    assert best["val_acc"] == study.trials[best["trial"]].value
    # What trained them, as every trial records it.
    assert best["versions"] == baseline["versions"] == library_versions()
    assert best["threads"] == torch.get_num_threads()
    # the same two trials again: the stored result is reused, not retrained
    assert finalize(study, mnist, CPU, compile=False)["finalized_at"] == final["finalized_at"]


def test_finalize_retrains_the_highest_complete_trial_the_earlier_of_a_tie(
    mnist: Mnist, tmp_path: Path
) -> None:
    """Told by hand so that every wrong pick differs: the first, the last, the lowest, the
    later of a tie, a pruned trial whose curve rose higher."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'hpo.db'}", direction="maximize")
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}
    told = [(TrialState.COMPLETE, 0.6), (TrialState.COMPLETE, 0.9), (TrialState.COMPLETE, 0.9),
            (TrialState.PRUNED, None), (TrialState.COMPLETE, 0.3)]  # fmt: skip
    for number, (state, value) in enumerate(told):
        config = TrainConfig(epochs=1, seed=number, hidden1=8, hidden2=8, lr=0.01 + number / 100)
        curves = {"val_acc": [0.99 if value is None else value]}
        attrs = {"config": config.to_dict(), "curves": curves, "is_baseline": number == 0}
        study.add_trial(
            optuna.trial.create_trial(
                state=state, value=value, params={"lr": config.lr}, distributions=lr,
                user_attrs=attrs, intermediate_values={0: curves["val_acc"][0]},
            )
        )  # fmt: skip
    final = finalize(study, mnist, CPU, compile=False)
    assert final["best"] is not None and final["baseline"] is not None
    assert (final["best"]["trial"], final["baseline"]["trial"]) == (1, 0)
    assert final["best"]["config"]["lr"] == pytest.approx(0.02)  # trial 1's config, retrained


def test_finalize_again_after_the_baseline_completed_retrains_rather_than_reusing(
    mnist: Mnist, tmp_path: Path
) -> None:
    """The stored result is reused only for the same best and the same baseline: finalized
    while the baseline's attempt had not completed, it has none, and a baseline completed
    since (a later `hpo run`) must be retrained and stored."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'hpo.db'}", direction="maximize")
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}

    def tell(state: TrialState, value: float | None, is_baseline: bool) -> None:
        number = len(study.trials)
        config = TrainConfig(
            epochs=2, seed=number, hidden1=8, hidden2=8, lr=0.01 + number / 100, batch_size=750
        )
        attrs = {"config": config.to_dict(), "curves": {"val_acc": [0.5, value or 0.5]},
                 "is_baseline": is_baseline}  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                state=state, value=value, params={"lr": config.lr}, distributions=lr,
                user_attrs=attrs, intermediate_values={0: 0.5, 1: value or 0.5},
            )
        )  # fmt: skip

    tell(TrialState.PRUNED, None, True)  # the baseline's attempt, cut short: no baseline
    tell(TrialState.COMPLETE, 0.9, False)
    first = finalize(study, mnist, CPU, compile=False)
    assert first["best"] is not None and first["best"]["trial"] == 1
    assert first["baseline"] is None
    tell(TrialState.COMPLETE, 0.6, True)  # the baseline, queued again and completed
    again = finalize(study, mnist, CPU, compile=False)
    assert again["best"] is not None and again["best"]["trial"] == 1
    assert again["baseline"] is not None and again["baseline"]["trial"] == 2
    assert again["baseline"]["config"]["lr"] == pytest.approx(0.03)  # trial 2's, retrained
    assert study.user_attrs["final"] == again
    for record in (again["best"], again["baseline"]):
        # Two epochs on the full set: the time is both epochs', not one's.
        spe = record["seconds_per_epoch"]
        assert record["epochs"] == 2 and spe is not None and spe > 0
        assert record["train_seconds"] == pytest.approx(spe * 2)


def test_finalize_refuses_a_best_trial_hpo_did_not_run_naming_it_and_trains_nothing(
    mnist: Mnist, tmp_path: Path
) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'hpo.db'}", direction="maximize")
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}
    config = TrainConfig(epochs=1, seed=0, hidden1=8, hidden2=8).to_dict()
    for value, attrs in ((0.5, {"config": config, "is_baseline": True}), (0.9, {})):
        study.add_trial(
            optuna.trial.create_trial(
                value=value, params={"lr": 0.01}, distributions=lr, user_attrs=attrs
            )
        )
    with pytest.raises(HpoError, match=r"best trial, #1, stored no config .* Fix: "):
        finalize(study, mnist, CPU, compile=False, cache_dir=tmp_path / "models")
    assert "final" not in study.user_attrs and not (tmp_path / "models").exists()


def test_finalize_caches_its_models_where_the_report_finds_them(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = run(tiny_spec(), tmp_path, 3, mnist=mnist)
    cache = models_dir(tmp_path / "runs", "s")
    final = finalize(study, mnist, CPU, compile=False, cache_dir=cache)
    best = final["best"]
    assert best is not None and len(list(cache.glob("*.pt"))) == len({best["trial"], 0})

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again: the report would not have found finalize's model")

    monkeypatch.setattr(hpo.retrain, "fit", no_fit)
    for record in (final["best"], final["baseline"]):
        assert record is not None
        config = TrainConfig.from_dict(record["config"])
        threads, compile_ = record["threads"], record["compile"]  # as the report asks
        model = trained(config, mnist, CPU, cache, threads=threads, compile=compile_)
        assert model.test_acc == record["test_acc"] and model.cached
        # Scored on the test set, not the validation split: the model's own test predictions.
        guesses = predict(model.model, normalise(mnist.arrays.test_images))
        correct = (guesses == mnist.arrays.test_labels).sum().item()
        assert record["test_acc"] == pytest.approx(correct / len(guesses), abs=1e-9)
    # A finalize that finds the same models cached (a study of this name in another storage,
    # say) says that its scores come from there, rather than that it retrained.
    said: list[str] = []
    study.set_user_attr("final", None)
    again = finalize(study, mnist, CPU, compile=False, cache_dir=cache, log=said.append)
    assert again["best"] is not None
    assert again["best"].get("cached") and any("from the cache" in line for line in said), said
    assert again["best"]["test_acc"] == best["test_acc"]
    with pytest.raises(AssertionError, match="trained again"):  # hpo finalize: anew, not cached
        finalize(study, mnist, CPU, compile=False, cache_dir=cache, force=True)


def test_finalize_exports_best_and_baseline_as_models_load_model_rebuilds(
    mnist: Mnist, tmp_path: Path
) -> None:
    study = run(tiny_spec(), tmp_path, 3, mnist=mnist)
    out = tmp_path / "runs" / "s"
    final = finalize(study, mnist, CPU, compile=False, export_dir=out)
    images, labels = normalise(mnist.arrays.test_images), mnist.arrays.test_labels
    for role in ("best", "baseline"):
        record = final["best"] if role == "best" else final["baseline"]
        assert record is not None and record["model"] == str(out / f"{role}.pt")
        config, model = load_model(record["model"])
        assert config == TrainConfig.from_dict(study.trials[record["trial"]].user_attrs["config"])
        assert not model.training  # ready to predict: BatchNorm uses its running statistics
        # The weights finalize scored: their own test predictions give its test accuracy.
        correct = (predict(model, images) == labels).sum().item()
        assert record["test_acc"] == pytest.approx(correct / len(labels), abs=1e-9)
        saved = torch.load(record["model"], weights_only=True)
        assert (saved["study"], saved["trial"], saved["role"]) == ("s", record["trial"], role)


def test_load_model_names_a_file_that_is_no_exported_model(tmp_path: Path, mnist: Mnist) -> None:
    with pytest.raises(HpoError, match=r"cannot read a model from .*absent\.pt: .*No such file"):
        load_model(tmp_path / "absent.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(HpoError, match=r"cannot read a model from .*cut\.pt: .*zip archive"):
        load_model(tmp_path / "cut.pt")
    # A model cache file holds weights but not the config that builds them.
    cache = tmp_path / "models"
    trained(TrainConfig(epochs=1, hidden1=8, hidden2=8), mnist, CPU, cache, compile=False)
    (cached,) = cache.glob("*.pt")
    with pytest.raises(HpoError, match=r"is not a model hpo exported .* writes runs/NAME/best"):
        load_model(cached)


def test_progress_redraws_one_line_on_a_terminal_and_prints_lines_otherwise() -> None:
    now = [0.0]
    for tty in (True, False):
        out = io.StringIO()
        p = Progress(out, tty=tty, clock=lambda: now[0])
        p.start(Counts(4))
        p.trial_started(0, 10)
        now[0] += 5.0
        p.epoch(0, 0)  # 5 s per epoch, 10 epochs, 4 trials: 195 s still to go
        assert p.remaining() == pytest.approx(4 * 50 - 5)
        now[0] += 45.0
        p.trial_finished(
            0, "complete: 0.9700", Counts(4, complete=1, best_value=0.97, best_trial=0)
        )
        p.close()
        text = out.getvalue()
        if tty:
            assert "\r" in text and "\x1b[K" in text
            assert "#0 epoch 1/10" in text and "trial 0 complete" not in text
        else:
            assert "\r" not in text
            assert text.splitlines()[-1] == (
                "trial 0 complete: 0.9700 | trials 1/4 | pruned 0 | failed 0 | best 0.9700 (#0) "
                "| 0:50 elapsed, ~2:30 left"
            )


def test_progress_says_a_study_past_its_target_has_nothing_to_run() -> None:
    for finished, said in [
        (2, "2 of 2 trials finished at start"),
        (4, "4 trials finished at start, more than the 2 asked for (--trials counts the "
         "study's total): nothing to run"),
    ]:  # fmt: skip
        out = io.StringIO()
        Progress(out, tty=False).start(Counts(2, complete=finished))
        assert out.getvalue().splitlines()[0] == said


def test_on_a_terminal_a_failed_trial_stays_on_screen_and_others_are_redrawn_over() -> None:
    now = [0.0]
    out = io.StringIO()
    p = Progress(out, tty=True, clock=lambda: now[0])
    p.start(Counts(4))
    for number, said, counts in [
        (1, "failed: diverged: train loss nan at epoch 1 of 2", Counts(4, failed=1)),
        (2, "pruned at epoch 1 of 2", Counts(4, pruned=1, failed=1)),
        (3, "complete: 0.9700", Counts(4, 1, 1, 1, best_value=0.97, best_trial=3)),
    ]:
        p.trial_started(number, 2)
        now[0] += 10.0
        p.trial_finished(number, said, counts)
    p.close()
    # What stays on screen: each line's text after its last carriage return.
    kept = [line.split("\r")[-1] for line in out.getvalue().split("\n")]
    assert kept == [
        "0 of 4 trials finished at start\x1b[K",
        "trial 1 failed: diverged: train loss nan at epoch 1 of 2\x1b[K",
        "trials 2/4 | pruned 1 | failed 1 | best 0.9700 (#3) | 0:30 elapsed, ~0:20 left\x1b[K",
        "",
    ]


def test_a_trials_outcome_says_where_a_pruned_trial_stopped() -> None:
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}

    def told(state: TrialState, value: float | None, reason: str | None) -> FrozenTrial:
        attrs = {} if reason is None else {"reason": reason}
        return optuna.trial.create_trial(
            state=state, value=value, params={"lr": 0.01}, distributions=lr, user_attrs=attrs
        )

    assert outcome(told(TrialState.PRUNED, None, "pruned at epoch 3 of 20")) == (
        "pruned at epoch 3 of 20"
    )
    assert outcome(told(TrialState.PRUNED, None, None)) == "pruned"  # a reason never stored
    assert outcome(told(TrialState.COMPLETE, 0.97, "")) == "complete: 0.9700"
    assert outcome(told(TrialState.FAIL, None, "diverged: train loss nan at epoch 1 of 2")) == (
        "failed: diverged: train loss nan at epoch 1 of 2"
    )


def test_the_summary_counts_each_state_and_names_the_best_and_the_baseline_apart(
    tmp_path: Path,
) -> None:
    """The baseline (#0) is not the best here, and every state occurs a different number of
    times, so that no two of them can stand in for each other."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'hpo.db'}")  # no heartbeat: a trial is asked
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.set_user_attr("epochs", 3)
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 0.3)}
    told = [  # (state, value, epochs run, is_baseline)
        (TrialState.COMPLETE, 0.96, 3, True),
        (TrialState.COMPLETE, 0.98, 3, False),
        (TrialState.PRUNED, None, 1, False),
        (TrialState.PRUNED, None, 2, False),
        (TrialState.PRUNED, None, 1, False),
        (TrialState.FAIL, None, 1, False),
        (TrialState.FAIL, None, 1, False),
        (TrialState.COMPLETE, 0.97, 3, False),
    ]
    for state, value, run, baseline in told:
        attrs = {"epochs_run": run, "is_baseline": baseline, "config": {"epochs": 3}}
        study.add_trial(
            optuna.trial.create_trial(
                state=state, value=value, params={"lr": 0.01}, distributions=lr, user_attrs=attrs
            )
        )
    study.enqueue_trial({"lr": 0.02})
    study.ask()  # running
    summary = summarize(study, storage, target=10)
    assert (summary.complete, summary.pruned, summary.failed, summary.running) == (3, 3, 2, 1)
    assert summary.finished == 6 and summary.epochs == 3
    assert (summary.epochs_run, summary.epochs_without_pruning) == (9 + 4, 18)
    assert summary.best is not None and summary.best.number == 1
    assert summary.baseline is not None and summary.baseline.number == 0
    assert hpo.study_summary.counts(study, 10) == Counts(10, 3, 3, 2, 1, 0.98, 1)


def test_clock_text_shows_minutes_and_seconds_and_hours_past_the_hour() -> None:
    assert [clock_text(s) for s in (0, 59.6, 150, 3599)] == ["0:00", "1:00", "2:30", "59:59"]
    assert clock_text(3600) == "1:00:00"
    assert clock_text(4500) == "1:15:00"  # the minutes within the hour, not 75
    assert clock_text(25 * 3600 + 61) == "25:01:01"
    assert clock_text(-5) == "0:00"


def test_a_lost_baseline_outside_the_space_is_failed_and_run_again(
    mnist: Mnist, tmp_path: Path
) -> None:
    """A trial whose heartbeat stopped (its process was killed) is failed by the next run and its
    parameters queued again: here the baseline, whose hidden1=300 lies outside the range, which
    Optuna's own retry callback could not re-create."""
    spec = tiny_spec()  # hidden1 in [8, 32]
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = open_study(spec, storage, "s")
    with pytest.warns(UserWarning):
        lost = study.ask()  # pops the queued baseline, as a worker that then dies would
    lost.set_user_attr("origin", lost.number)
    lost.set_user_attr("reason", UNFINISHED)  # as run_trial leaves it until the trial ends
    storage.record_heartbeat(lost._trial_id)
    time.sleep(3.5)  # silent for longer than the grace period (3 x 1 s)
    said = io.StringIO()
    run_study(spec, storage, "s", 2, CPU, mnist, Progress(said), runs_dir=None, compile=False)
    assert "trial(s) #0 lost: no heartbeat for 3 s" in said.getvalue()  # said, once
    assert said.getvalue().count(" lost: ") == 1
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[0].state == TrialState.FAIL
    again = [t for t in trials if t.user_attrs.get("origin") == 0 and t.number > 0]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert again[0].user_attrs["is_baseline"] is True
    assert again[0].user_attrs["config"] == TrainConfig(epochs=2, seed=0).to_dict()
    assert again[0].params["hidden1"] == 300


def test_a_trial_lost_before_its_first_heartbeat_is_failed_and_run_again(
    mnist: Mnist, tmp_path: Path
) -> None:
    """A worker killed between asking for a trial and its first heartbeat leaves a running trial
    that Optuna's stale check never sees. The study must not wait for it forever: after the
    grace period it is failed and its parameters run again."""
    spec = tiny_spec()
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = open_study(spec, storage, "s")
    with pytest.warns(UserWarning):
        study.ask()  # pops the queued baseline; no heartbeat, no attributes: killed right here
    began, said = time.monotonic(), io.StringIO()
    summary = run_study(
        spec, storage, "s", 2, CPU, mnist, Progress(said), runs_dir=None, compile=False, timeout=60
    )
    assert "trial(s) #0 lost" in said.getvalue()
    assert summary.stopped_early == ""  # "timeout" when it waited for the orphan in vain
    assert time.monotonic() - began < 60
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[0].state == TrialState.FAIL
    again = [t for t in trials if t.user_attrs.get("origin") == 0 and t.number > 0]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert again[0].user_attrs["is_baseline"] is True
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


def test_the_wait_for_trials_running_elsewhere_is_said_when_they_change_not_at_every_poll(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose last places are held by another worker's trials polls until they end: it says
    which trials it waits for once, and again only when that changes."""
    spec = tiny_spec()
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = open_study(spec, storage, "s")
    with pytest.warns(UserWarning):  # asked by hand, as the other worker would
        elsewhere = [study.ask(), study.ask()]  # the baseline and one more, both beating
    for trial in elsewhere:
        storage.record_heartbeat(trial._trial_id)
    polls = 0

    def poll(seconds: float) -> None:  # no real sleep: the other worker ends its trials here
        nonlocal polls
        polls += 1
        if polls in (3, 6):
            study.tell(elsewhere[polls // 3 - 1], 0.5)

    monkeypatch.setattr(hpo.sweeper, "time", SimpleNamespace(sleep=poll))
    said = io.StringIO()
    summary = run_study(
        spec, storage, "s", 2, CPU, mnist, Progress(said), runs_dir=None, compile=False
    )
    assert polls == 6 and summary.stopped_early == ""
    waits = [line for line in said.getvalue().splitlines() if line.startswith("waiting for")]
    assert [w.split(":")[0] for w in waits] == [
        "waiting for running trial(s) #0, #1",
        "waiting for running trial(s) #1",
    ]
    assert "re-queued after 3 s without a heartbeat" in waits[0]
    assert [t.state for t in optuna.load_study(study_name="s", storage=storage).trials] == [
        TrialState.COMPLETE
    ] * 2  # none trained here: the place check kept this run from a third


@pytest.mark.skipif(this_process() is None, reason="needs Linux's /proc")
def test_a_trial_whose_process_here_ended_is_failed_at_once_and_said_lost_once(
    tmp_path: Path,
) -> None:
    """A trial whose process on this machine ended is lost now, not after 3 silent heartbeats:
    failed, queued again, and said once, for that reason (not again as a silent heartbeat)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = open_study(tiny_spec(), storage, "s")
    with pytest.warns(UserWarning):  # the baseline, popped by a worker since killed
        trial = study.ask()
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait(timeout=30)
    me = this_process()
    assert me is not None
    trial.set_user_attr("process", {**me, "pid": ended.pid})
    storage.record_heartbeat(trial._trial_id)  # it beat a moment ago: no heartbeat says lost
    said = io.StringIO()
    trials = hpo.sweeper.Sweeper(study, storage, Progress(said)).sweep()
    assert said.getvalue().splitlines() == [
        "trial(s) #0 lost: their process on this machine has ended (their run was killed or "
        "crashed); failed, and their parameters queued again (up to 3 re-runs each)"
    ]
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs == {"is_baseline": True, "origin": 0}


def test_a_lost_trial_is_queued_again_at_most_three_times() -> None:
    study = optuna.create_study()
    x: dict[str, BaseDistribution] = {"x": optuna.distributions.FloatDistribution(0, 2)}
    attrs = {"origin": 0, "is_baseline": True}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL, params={"x": 1.5}, distributions=x, user_attrs=attrs
        )
    )
    told = []
    for _ in range(5):  # each re-run is lost in turn, as its predecessor was
        told.append(requeue(study, study.trials[-1]))
        if not told[-1]:
            break
        (queued,) = study.get_trials(states=(TrialState.WAITING,))
        assert queued.user_attrs == attrs and queued.system_attrs["fixed_params"] == {"x": 1.5}
        assert requeue(study, study.trials[-2])  # asked again while a copy waits: no second one
        assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
        study._storage.set_trial_state_values(queued._trial_id, TrialState.FAIL)
    assert told == [True, True, True, False]
    # The last attempt has no later one at its parameters: given up, as the user is told.
    failed = [t.number for t in study.trials if t.state == TrialState.FAIL]
    assert not_requeued(study.trials, failed) == failed[-1:]


def test_a_trial_killed_before_its_first_attributes_is_said_lost_too() -> None:
    def trial(number: int, state: TrialState, attrs: dict[str, Any]) -> FrozenTrial:
        made = optuna.trial.create_trial(state=state, user_attrs=attrs)
        made.number = number
        return made

    before = [trial(n, TrialState.RUNNING, {}) for n in (1, 2, 3)]
    now = [
        trial(1, TrialState.FAIL, {}),  # killed between its first heartbeat and attributes
        trial(2, TrialState.FAIL, {"reason": UNFINISHED}),
        trial(3, TrialState.FAIL, {"reason": "diverged: train loss nan at epoch 1 of 2"}),
    ]
    assert hpo.sweeper._lost(before, now) == [1, 2]


def test_a_lost_trial_given_up_is_said_so_not_said_queued() -> None:
    said = io.StringIO()
    Progress(said).lost([3, 4], [4], "no heartbeat for 3 s", 3)
    lines = said.getvalue().splitlines()
    assert lines[0].startswith("trial(s) #3 lost") and "queued again (up to 3" in lines[0]
    assert lines[1].startswith("trial(s) #4 lost") and "NOT queued again" in lines[1]


def lost_baseline_study(storage: RDBStorage, reasons: list[str]) -> optuna.Study:
    study = open_study(tiny_spec(), storage, "s")
    for reason in reasons:  # each attempt popped from the queue and lost
        with pytest.warns(UserWarning):  # hidden1=300: outside the tiny space
            trial = study.ask()
        trial.set_user_attr("origin", 0)
        trial.set_user_attr("reason", reason)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if reason == UNFINISHED and len(study.trials) <= 3:
            requeue(study, study._storage.get_trial(trial._trial_id))
    return study


def test_a_baseline_lost_past_its_reruns_is_queued_again_by_the_next_run(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = lost_baseline_study(storage, [UNFINISHED] * 4)
    assert not study.get_trials(states=(TrialState.WAITING,))  # requeue gave up
    note, target = restore_baseline(storage, "s", 4)
    assert note is not None and "4 attempts were all lost" in note and target == 4
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs == {"is_baseline": True, "origin": 0}
    assert queued.system_attrs["fixed_params"]["hidden1"] == 300
    assert restore_baseline(storage, "s", 4) == (None, 4)  # queued now: nothing more to do
    assert restore_baseline(storage, "absent", 4) == (None, 4)  # a new study: nothing to do


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the two trials asked by hand
def test_a_restored_baseline_runs_where_the_study_had_reached_its_target(
    mnist: Mnist, tmp_path: Path
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = lost_baseline_study(storage, [UNFINISHED] * 3 + [""])  # the last: an orphan's
    for _ in range(2):  # two trials finished meanwhile: the study's target of 2 is reached
        trial = study.ask()
        study.tell(trial, 0.5)
    study.enqueue_trial({}, user_attrs={"origin": 99})  # a copy queued ahead of the baseline
    note, target = restore_baseline(storage, "s", 2)
    assert note is not None and "the target goes to 4 trials so that it runs" in note
    run_study(tiny_spec(), storage, "s", target, CPU, mnist, Progress(), runs_dir=None)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    done = [t for t in trials if t.user_attrs.get("is_baseline") and t.state.is_finished()]
    assert done[-1].state == TrialState.COMPLETE


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the two trials asked by hand
def test_a_baseline_queued_again_by_two_machines_at_once_trains_once_per_place(
    mnist: Mnist, tmp_path: Path
) -> None:
    """Storages have no compare-and-set: two runs restoring at the same instant both queue it.
    The target leaves one place, so one copy trains; the report's baseline is that one."""
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = lost_baseline_study(storage, [UNFINISHED] * 4)
    for _ in range(2):  # the study's target of 2 reached meanwhile
        study.tell(study.ask(), 0.5)
    last = study.trials[3]
    _, target = restore_baseline(storage, "s", 2)
    queue_again(study, last)  # the other machine, which loaded the study before this one queued
    first, second = study.get_trials(states=(TrialState.WAITING,))
    run_study(tiny_spec(), storage, "s", target, CPU, mnist, Progress(), runs_dir=None)
    states = {t.number: t.state for t in study.get_trials()}
    assert (states[first.number], states[second.number]) == (
        TrialState.COMPLETE,
        TrialState.WAITING,
    )
    run_study(tiny_spec(), storage, "s", target + 1, CPU, mnist, Progress(), runs_dir=None)
    assert study.trials[second.number].state == TrialState.COMPLETE  # a trial of a larger run
    baseline = baseline_of(study.get_trials())
    assert baseline is not None and baseline.number == first.number


def test_a_baseline_that_failed_by_itself_is_not_queued_again(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = lost_baseline_study(storage, ["diverged: train loss nan at epoch 1 of 2"])
    note, _ = restore_baseline(storage, "s", 4)
    assert note is not None and "the baseline failed (diverged" in note
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped raise
def test_a_stop_whose_raise_python_dropped_still_stops_the_run(
    mnist: Mnist, tmp_path: Path
) -> None:
    """A signal handler runs wherever the main thread is; raised inside a weakref's callback, its
    KeyboardInterrupt is printed and dropped by Python, and a --jobs worker (which ignores later
    signals) trained on to the study's end. The stop is raised again at the next checkpoint."""

    class Dropped:
        pass

    class SigtermInACallback(Progress):
        def epoch(self, number: int, epoch: int) -> None:
            if number == 1 and epoch == 0:
                gone = Dropped()
                weakref.finalize(gone, stop_once, signal.SIGTERM, None)
                del gone  # the handler runs in the finalizer: "Exception ignored in ..."

    held = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    try:
        with pytest.raises(Terminated):
            spec, progress = tiny_spec(epochs=3), SigtermInACallback()
            run_study(spec, storage, "s", 4, CPU, mnist, progress, runs_dir=tmp_path / "runs")
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[1].state == TrialState.FAIL and len(trials[1].intermediate_values) == 1
    assert trials[1].user_attrs["reason"].startswith(INTERRUPTED)
    assert [t.user_attrs["origin"] for t in trials if t.state == TrialState.WAITING] == [1]


def test_a_second_ctrl_c_while_the_first_queues_the_trial_again_loses_nothing(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptAt(Progress):
        def epoch(self, number: int, epoch: int) -> None:
            if number == 1:
                raise KeyboardInterrupt

    real = hpo.trial.requeue

    def ctrl_c_again_then_requeue(study: optuna.Study, trial: FrozenTrial) -> bool:
        signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt here, unheld
        return real(study, trial)

    monkeypatch.setattr(hpo.trial, "requeue", ctrl_c_again_then_requeue)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_spec(), storage, "s", 3, CPU, mnist, InterruptAt(), runs_dir=None)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[1].user_attrs["reason"].endswith("its parameters were queued again")
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.user_attrs["origin"] == 1 and queued.params == {}  # fixed_params: trial 1's
    assert queued.system_attrs["fixed_params"] == trials[1].params
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again


def test_a_stop_in_the_tell_of_a_finished_trial_queues_its_parameters_again(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Training is over, the result not yet committed: the trial must not end FAIL and forgotten.
    real = optuna.Study.tell

    def ctrl_c_in_the_tell(self: optuna.Study, trial: Any, *args: Any, **kwargs: Any) -> Any:
        number = trial if isinstance(trial, int) else trial.number
        if number == 1 and kwargs.get("state") is None:  # the complete trial's tell
            raise KeyboardInterrupt
        return real(self, trial, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "tell", ctrl_c_in_the_tell)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_spec(), storage, "s", 3, CPU, mnist, Progress(), runs_dir=None)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["reason"] == f"{INTERRUPTED}; its parameters were queued again"
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.user_attrs["origin"] == 1
    assert queued.system_attrs["fixed_params"] == trials[1].params


def test_a_stop_in_a_trials_first_heartbeat_queues_it_again_and_records_its_process(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hpo.search.Heartbeat.__enter__
    entered: list[int] = []

    def ctrl_c_on_the_second(self: Any) -> Any:
        entered.append(1)
        if len(entered) == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(hpo.search.Heartbeat, "__enter__", ctrl_c_on_the_second)
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_spec(), storage, "s", 3, CPU, mnist, Progress(), runs_dir=None)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[1].state == TrialState.FAIL  # not left RUNNING, waiting for its heartbeat
    assert trials[1].user_attrs["process"] == this_process()  # recorded before the heartbeat
    (queued,) = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.user_attrs["origin"] == 1


def test_interrupting_a_trial_again_and_again_never_loses_its_parameters() -> None:
    # Ctrl-C is the user's stop, not the trial's failure: the baseline stopped ten times is
    # queued ten times, while a trial lost (killed) again and again gets MAX_RETRY re-runs.
    x: dict[str, BaseDistribution] = {"x": optuna.distributions.FloatDistribution(0, 2)}
    for reason, reruns in (
        (f"{INTERRUPTED}; its parameters were queued again", 10),
        (UNFINISHED, 3),
    ):
        study = optuna.create_study()
        attrs = {"origin": 0, "is_baseline": True, "reason": reason}
        first = optuna.trial.create_trial(
            state=TrialState.FAIL, params={"x": 1.5}, distributions=x, user_attrs=attrs
        )
        study.add_trial(first)
        queued = 0
        for _ in range(10):
            requeue(study, study.trials[-1])
            waiting = study.get_trials(states=(TrialState.WAITING,))
            if not waiting:
                break
            queued += 1  # the re-run stops the same way
            study._storage.set_trial_user_attr(waiting[0]._trial_id, "reason", reason)
            study._storage.set_trial_state_values(waiting[0]._trial_id, TrialState.FAIL)
        assert queued == reruns


def take_for_lost(study: optuna.Study) -> int:
    """What another worker does to a trial whose heartbeat it found stale: fail it, queue it."""
    (running,) = study.get_trials(states=(TrialState.RUNNING,))
    study._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
    requeue(study, study._storage.get_trial(running._trial_id))
    return running.number


def test_ctrl_c_on_a_trial_another_worker_already_failed_as_lost_queues_nothing_twice(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    spec = tiny_spec()
    study = open_study(spec, storage, "s")

    def taken_for_lost_then_interrupted(*args: object, **kwargs: object) -> None:
        take_for_lost(study)
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.trial, "fit", taken_for_lost_then_interrupted)
    with pytest.raises(KeyboardInterrupt):  # not StopIteration, and no second queued copy
        run_study(spec, storage, "s", 2, CPU, mnist, Progress(), runs_dir=None, compile=False)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs == {"origin": 0, "is_baseline": True}


def test_a_trial_taken_for_lost_while_training_gives_way_to_its_rerun(
    mnist: Mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its heartbeat was late (a suspended laptop, a stalled disk): another worker failed it and
    # queued it again. Its next write finds it finished: it stops, and the study goes on.
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    spec = tiny_spec()
    study = open_study(spec, storage, "s")
    real_fit = hpo.trial.fit
    taken: list[int] = []

    def fit(
        config: TrainConfig,
        mnist: Mnist,
        device: torch.device,
        on_epoch: OnEpoch | None = None,
        **kwargs: Any,
    ) -> FitResult:
        if taken:
            return real_fit(config, mnist, device, on_epoch, **kwargs)
        assert on_epoch is not None  # hpo.trial follows every epoch

        def late(m: EpochMetrics) -> None:
            taken.append(take_for_lost(study))
            on_epoch(m)

        return real_fit(config, mnist, device, late, **kwargs)

    monkeypatch.setattr(hpo.trial, "fit", fit)
    summary = run_study(spec, storage, "s", 2, CPU, mnist, Progress(), runs_dir=None, compile=False)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert taken == [0] and trials[0].state == TrialState.FAIL
    assert trials[1].user_attrs["origin"] == 0 and trials[1].state == TrialState.COMPLETE
    assert summary.complete == 2


def test_a_timeout_stops_the_run_between_trials_and_says_so(mnist: Mnist, tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    summary = run_study(
        tiny_spec(), storage, "s", 50, CPU, mnist, Progress(), timeout=0.5,
        runs_dir=tmp_path / "runs", compile=False,
    )  # fmt: skip
    assert summary.stopped_early == "timeout"
    assert 1 <= summary.finished < 50  # the trial under way when time ran out is finished


def test_the_summary_reads_a_complete_trial_that_stored_no_config(tmp_path: Path) -> None:
    """A trial told by hand (optuna's API, another tool) has params but no hpo attributes: it
    may be the best, and the summary must not KeyError on it."""
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.05}, distributions={"lr": FloatDistribution(1e-3, 0.3)}, value=0.9
        )
    )
    summary = summarize(study, storage, target=1)
    assert summary.best is not None and summary.best.config == {"lr": 0.05}
    assert summary.best.val_acc is None and summary.complete == 1
