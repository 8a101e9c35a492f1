"""A sampler whose randomness is a function of (study seed, trial), not of process history.

Workers started with the same seed hold samplers in the same RNG state; seeing the same trials, two
of them asking at once would propose the same parameters. Trial numbers are unique across every
worker of a study, so seeding each trial from its number (less the re-runs before it: see
``draw_index``; a re-run takes its first attempt's) gives every worker its own stream, and a
one-worker run stays exactly reproducible, resumed or not.

The inner sampler is built afresh for each trial with that trial's seed: Optuna's samplers keep
their state in the study (CMA-ES, QMC) or derive it from the stored trials (TPE, random), so a
fresh one loses nothing but the RNG state that made workers collide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


def origin_of(trial: FrozenTrial) -> int:
    """The number of the trial's first attempt at its parameters: its own, or for a re-run (a
    lost or interrupted trial's parameters queued again) the ``origin`` it was queued with."""
    return int(trial.user_attrs.get("origin", trial.number))


def draw_index(trials: Sequence[FrozenTrial], number: int) -> int:
    """Trial ``number``'s place among the study's own draws: its number less the re-runs before
    it (a lost or interrupted trial's parameters queued again, ``origin`` another trial). Seeds
    come from it, not from the number, so a study resumed after an interruption draws the same
    sequence as one run straight through: each re-run shifts the later numbers by one."""
    earlier = (t for t in trials if t.number < number)
    reruns = sum(origin_of(t) != t.number for t in earlier)
    return number - reruns


def draw_of(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> int:
    """``trial``'s draw index: its first attempt's (``trials``: every trial of the study)."""
    return draw_index(trials, origin_of(trial))


def training_seed(study_seed: int, index: int) -> int:
    """The seed the trial at draw ``index`` trains with (initial weights, batch order), which
    it records as its ``seed`` user attr; it also picks its Hyperband bracket
    (``hpo.pruners.DrawSeededHyperband``)."""
    # Hash-free and stable across Python versions and processes.
    return study_seed * 100_003 + index


def sampler_seed(study_seed: int, index: int) -> int:
    """The sampler's seed for the trial at draw ``index`` (``draw_index``); the training seed
    is ``training_seed``."""
    # SeedSequence mixes both words, so (0, 1) and (1, 0) do not share a stream; stable across
    # numpy versions and platforms.
    return int(np.random.SeedSequence([study_seed, index]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to ``build(seed)``, rebuilt in ``before_trial`` with the trial's own seed.

    One trial at a time per instance: ``before_trial`` .. ``after_trial`` use the sampler built for
    that trial, as Study.optimize with n_jobs=1 and hpo's loop both guarantee.
    """

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self._inner = build(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # Every trial of the study: under Hyperband ``study`` is Optuna's per-bracket view, whose
        # get_trials() leaves out the re-runs of other brackets (and so shifts the count).
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        # A re-run draws what its first attempt drew (and trains with its seed, hpo.trial): by
        # its own number it would share an index with the next new trial, and its draws.
        self._inner = self._build(sampler_seed(self._seed, draw_of(trials, trial)))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        pass  # the seed comes from the trial's draw index, already unique per trial
