"""The spec's pruner as an Optuna object, pruning a resumed study as one run straight through.

Two things a re-run (an interrupted or lost trial's parameters queued again, ``origin`` its first
attempt: hpo.lost_trials) changes in Optuna's own pruners, which these undo:
- Hyperband picks a trial's bracket from (study name, trial number), and the re-run shifts every
  later number: here the bracket follows the trial's training seed (study seed, draw index).
- Successive halving (Hyperband's brackets too) ranks a trial against the rung values of every
  trial, failed ones included: the first attempt's value would count beside its re-run's.
"""

from __future__ import annotations

import binascii
from collections.abc import Container
from typing import Any, cast

import optuna
from optuna.pruners import HyperbandPruner, SuccessiveHalvingPruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.lost_trials import superseded
from hpo.sampling import draw_of, training_seed
from hpo.spec import StudySpec


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.option("n_startup_trials"), n_warmup_steps=p.option("n_warmup_steps")
        )
    if p.name == "hyperband":
        return DrawSeededHyperband(
            spec.seed,
            min_resource=p.option("min_resource"),
            max_resource=spec.epochs,
            reduction_factor=p.option("reduction_factor"),
        )
    if p.name == "successive_halving":
        return RerunAwareHalving(
            min_resource=p.option("min_resource"),
            reduction_factor=p.option("reduction_factor"),
            min_early_stopping_rate=p.option("min_early_stopping_rate"),
        )
    return optuna.pruners.NopPruner()


class RerunAwareHalving(SuccessiveHalvingPruner):
    """Optuna's successive halving, ranking a trial against the rung values of the study's
    trials less the attempts a re-run has replaced (``hpo.lost_trials.superseded``)."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return super().prune(cast(optuna.Study, _WithoutReplaced(study)), trial)


class _WithoutReplaced:
    """What successive halving reads of a study (its trials, storage, direction), its trials
    less the attempts a re-run has replaced."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._storage = study._storage  # where the pruner records the trial's rung value
        self.direction: StudyDirection = study.direction

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        # All of them: under Hyperband ``study`` is one bracket's view (an attempt and its
        # re-run share a seed, so a bracket, but ``states`` may have left the re-run out).
        every = self._study._storage.get_all_trials(self._study._study_id, deepcopy=deepcopy)
        replaced = superseded(every)
        if type(self._study) is optuna.Study and states is None:  # the same trials: one read
            trials = every
        else:
            trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.number not in replaced]


class DrawSeededHyperband(HyperbandPruner):
    """Optuna's Hyperband, with each trial's bracket picked from its training seed (study seed,
    draw index: ``hpo.sampling``) rather than from (study name, trial number). Optuna's way
    moves every trial after a re-run into another bracket, and gives the same spec and seed
    other brackets under another ``--study`` name: which trials are pruned would differ from a
    run straight through. (Brackets decide pruning only: Optuna 5's samplers read every trial.)
    Its brackets halve as ``RerunAwareHalving`` does."""

    def __init__(self, seed: int, **options: Any) -> None:
        super().__init__(**options)
        self._seed = seed

    def _try_initialization(self, study: optuna.Study) -> None:
        super()._try_initialization(study)
        # Optuna's brackets, as it builds them, each a RerunAwareHalving.
        self._pruners = [
            RerunAwareHalving(
                min_resource=self._min_resource,
                reduction_factor=self._reduction_factor,
                min_early_stopping_rate=bracket,
                bootstrap_count=self._bootstrap_count,
            )
            for bracket in range(len(self._pruners))
        ]

    def _get_bracket_id(self, study: optuna.Study, trial: FrozenTrial) -> int:
        if not self._pruners:  # not set up yet (as Optuna's): every trial is in bracket 0
            return 0
        key = binascii.crc32(str(self._training_seed(study, trial)).encode())
        n = key % self._total_trial_allocation_budget
        for bracket, budget in enumerate(self._trial_allocation_budgets):
            n -= budget
            if n < 0:
                return bracket
        raise AssertionError("the budgets sum to the total")

    def _training_seed(self, study: optuna.Study, trial: FrozenTrial) -> int:
        seed = trial.user_attrs.get("seed")
        if isinstance(seed, int):  # recorded before the first report
            return seed
        if trial.state != TrialState.RUNNING:
            # Queued, or ended before its first record: it holds no rung value, so its bracket
            # changes nothing, and a bracket's view asks for every trial's at each prune.
            return -1
        # Asked before hpo records it (Optuna's _filter_study as the trial starts), or a trial
        # hpo did not run. ``study`` may be Optuna's per-bracket view: read them all.
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        return training_seed(self._seed, draw_of(trials, trial))
