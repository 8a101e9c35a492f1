"""The spec's sampler as an Optuna object (its pruner: hpo.pruners)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from hpo.errors import HpoError
from hpo.sampling import TrialSeededSampler, draw_of, origin_of
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
    """The spec's sampler, reseeded per trial from (seed, the trial's draw index: its number
    less the re-runs before it), so a resumed study draws as one run straight through; see
    hpo.sampling."""
    return TrialSeededSampler(
        functools.partial(_build_sampler, spec.sampler, spec.space), spec.seed
    )


def _build_sampler(s: Component, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
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
            if importlib.util.find_spec("scipy") is None:  # Optuna imports it at the first draw
                raise HpoError("sampler qmc needs scipy: pip install scipy")
            return optuna.samplers.QMCSampler(qmc_type=s.option("qmc_type"), seed=seed)
        try:
            import cmaes  # noqa: F401 - Optuna imports it lazily, after the study started
        except ImportError:
            raise HpoError("sampler cmaes needs the cmaes package: pip install cmaes") from None
        return StableCmaEsSampler(
            frozenset(cma_es_falls_back(space)),
            seed=seed,
            n_startup_trials=s.option("n_startup_trials"),
        )


class StableCmaEsSampler(optuna.samplers.CmaEsSampler):
    """CMA-ES over the numbers every trial has, fixed from the first trial on.

    Optuna's CmaEsSampler models the numbers common to the finished trials. When the first
    generation's trials happen to share a conditional (say all used gamma) and a later trial
    lacks it, that set shrinks, the stored optimizer's dimension no longer matches, and the
    sampler falls back to random search for the rest of the study, saying so only in a log
    warning. Leaving out from the start what only some schedules use keeps its dimension fixed,
    and makes setup_notes' list of parameters sampled at random exact.

    A resumed study also draws what one run straight through draws (as hpo.sampling makes
    every sampler do): Optuna seeds each ask from the trial's number, which a re-run shifts, so
    the draw index stands in for it; and a re-run, which asks with its first attempt's
    parameters fixed, is still asked of CMA-ES, so that it joins that attempt's generation.
    """

    def __init__(self, at_random: frozenset[str], *, seed: int, n_startup_trials: int) -> None:
        # Its warning per parameter sampled at random goes to a log hpo run silences;
        # setup_notes names those parameters once, before the first trial, instead.
        super().__init__(
            seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False
        )
        self._at_random = at_random

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = super().infer_relative_search_space(study, trial)
        return {name: d for name, d in space.items() if name not in self._at_random}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        origin = origin_of(trial)
        if origin == trial.number:
            return
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        first = next(t for t in trials if t.number == origin)
        # Optuna asks a sampler only for parameters not fixed, so a re-run of a trial CMA-ES
        # drew would get no generation and leave its place in it to another trial. The same
        # optimizer state and seed ask what the first attempt was given. Not for a re-run of
        # one it did not draw (a startup trial, the baseline): that would add it to one.
        if self._attr_key_generation in first.system_attrs:
            self.sample_relative(study, trial, self.infer_relative_search_space(study, trial))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        as_drawn = copy.copy(trial)  # the same trial id, which the optimizer's attrs go to
        as_drawn.number = draw_of(trials, trial)
        return super().sample_relative(study, as_drawn, search_space)


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
