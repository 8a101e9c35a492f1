"""The spec's sampler and pruner as Optuna objects."""

from __future__ import annotations

import functools
import warnings

import optuna

from hpo.errors import HpoError
from hpo.sampling import TrialSeededSampler
from hpo.spec import (
    USED_BY,
    Choice,
    Component,
    FloatRange,
    IntRange,
    SearchSpace,
    StudySpec,
    in_use,
)


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, reseeded per trial from (seed, trial number): see hpo.sampling."""
    return TrialSeededSampler(functools.partial(_build_sampler, spec.sampler), spec.seed)


def _build_sampler(s: Component, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.name == "tpe":
            multivariate = bool(s.option("multivariate"))
            # group=True: the conditional gamma/step_every get their own joint model.
            # constant_liar (Optuna's default, spelt out): a trial running in another worker
            # counts as a poor result, so parallel workers spread out instead of piling up.
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=s.option("n_startup_trials"),
                multivariate=multivariate,
                group=multivariate,
                constant_liar=True,
            )
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name == "qmc":
            return optuna.samplers.QMCSampler(qmc_type=s.option("qmc_type"), seed=seed)
        try:
            import cmaes  # noqa: F401 - Optuna imports it lazily, after the study started
        except ImportError:
            raise HpoError("sampler cmaes needs the cmaes package: pip install cmaes") from None
        # Its warning per parameter sampled at random goes to a log hpo run silences;
        # setup_notes names those parameters once, before the first trial, instead.
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=s.option("n_startup_trials"),
            warn_independent_sampling=False,
        )


def cma_es_falls_back(space: SearchSpace) -> list[str]:
    """The searched parameters CMA-ES cannot model, which Optuna's CmaEsSampler samples
    independently at random: categorical ones, and numbers that only some of the searched
    schedules use (CMA-ES models the parameters every finished trial has)."""
    schedule = dict(space.dims).get("schedule")
    schedules = schedule.choices if isinstance(schedule, Choice) else ()
    # Under a fixed schedule a conditional is in every trial or in none.
    partly_used = {name for name in USED_BY if any(not in_use(name, s) for s in schedules)}
    return [
        name
        for name, dim in space.dims
        if (isinstance(dim, Choice) and len(dim.choices) > 1)
        or (isinstance(dim, FloatRange | IntRange) and dim.low < dim.high and name in partly_used)
    ]


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.option("n_startup_trials"), n_warmup_steps=p.option("n_warmup_steps")
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.option("min_resource"),
            max_resource=spec.epochs,
            reduction_factor=p.option("reduction_factor"),
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.option("min_resource"),
            reduction_factor=p.option("reduction_factor"),
            min_early_stopping_rate=p.option("min_early_stopping_rate"),
        )
    return optuna.pruners.NopPruner()
