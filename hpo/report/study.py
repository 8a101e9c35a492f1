"""The stored study as the report reads it: trials, their states, the baseline and the best."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.records import Final, FinalSide, Role, baseline_of, final_of, ranked, target_of
from hpo.spec import DEFAULT_SPEC
from hpo.storage import load_existing_study
from hpo.storage_url import hpo_command, mask_url

DEFAULT_STUDY = DEFAULT_SPEC.stem
OBJECTIVE_LABELS = {"val_acc": "validation accuracy", "val_loss": "validation loss"}


@dataclass(frozen=True)
class StudyData:
    """One read of a study's trials and attrs, which the tables and most figures are drawn from;
    the landscape figures (``hpo.report.landscape``) hand ``study`` to Optuna's own
    visualisations, which read it again."""

    name: str
    storage: str  # masked: safe to print and to put in the report
    attrs: dict[str, Any]
    trials: tuple[FrozenTrial, ...]
    study: optuna.Study = field(repr=False, compare=False)

    def in_state(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.in_state(TrialState.COMPLETE) if t.value is not None]

    @property
    def objective(self) -> str:
        return str(self.attrs.get("objective", "val_acc"))

    @property
    def epochs(self) -> int | None:
        """Epochs per trial, the baseline's too (a study's identity)."""
        epochs = self.attrs.get("epochs")
        return epochs if isinstance(epochs, int) else None

    def command(self, verb: str, *flags: str) -> str:
        """The hpo command for ``verb`` on this study, as a hint to paste: its ``--study`` and,
        where not the default, its ``--storage`` (a password as PASSWORD)."""
        study = self.name if self.name != DEFAULT_STUDY else None
        return hpo_command(verb, *flags, study=study, storage=self.storage)

    @property
    def target_label(self) -> str:
        return OBJECTIVE_LABELS.get(self.objective, self.objective)

    @property
    def target_trials(self) -> int | None:
        """How many finished trials were asked for: by the last ``hpo run --trials``
        (``TARGET_ATTR``), else by the study's spec, where either says."""
        return target_of(self.attrs)

    @property
    def running(self) -> list[FrozenTrial]:
        return self.in_state(TrialState.RUNNING)

    @property
    def queued(self) -> list[FrozenTrial]:
        """A lost trial's parameters, queued to run again. Not a trial that a worker asked for
        and put back untrained because the study had no place left for it
        (``hpo.search.surplus``): that one holds nothing to run, and is where the study's next
        run starts."""
        return [t for t in self.in_state(TrialState.WAITING) if "fixed_params" in t.system_attrs]

    @property
    def partial(self) -> bool:
        """Trials still running (or left RUNNING by a killed run), or queued while the study is
        short of its target: the numbers may still move. Fewer finished trials than the target
        is not enough by itself: ``hpo run --trials`` may have asked for fewer on purpose, and
        with the target reached a queued trial is never run."""
        if self.running:
            return True
        finished = len(self.in_state(TrialState.COMPLETE, TrialState.PRUNED))
        target = self.target_trials
        return bool(self.queued) and (target is None or finished < target)

    @cached_property
    def baseline(self) -> FrozenTrial | None:
        """The tutorial's own configuration, complete (``hpo.records.baseline_of``): what
        ``hpo run`` and finalize call the baseline too."""
        return baseline_of(self.trials)

    @property
    def baseline_attempts(self) -> list[FrozenTrial]:
        """Trials marked ``is_baseline`` that did not complete (pruned, failed, running):
        said in the verdict when there is no baseline to compare with."""
        return [
            t
            for t in self.trials
            if t.user_attrs.get("is_baseline") and t.state != TrialState.COMPLETE
        ]

    def ranked(self) -> list[FrozenTrial]:
        """Complete trials, best first in the study's direction; the earlier wins a tie."""
        return ranked(self.trials, self.study.direction)

    @cached_property
    def best(self) -> FrozenTrial | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    @property
    def final(self) -> Final | None:
        return final_of(self.attrs)

    @property
    def finalized_at(self) -> str | None:
        final = self.final
        when = (final.get("finalized_at") if final else None) or self.attrs.get("finalized_at")
        return str(when) if when else None

    def final_for(self, trial: FrozenTrial | None, role: Role) -> FinalSide | None:
        """The finalize record of ``role`` ("best" or "baseline") if it is about ``trial``: a
        study that went on after finalize has a new best whose test accuracy nobody measured."""
        final = self.final
        record = final.get(role) if final else None
        if trial is None or not isinstance(record, dict) or record.get("trial") != trial.number:
            return None
        return record

    def exported_models(self) -> dict[Role, str]:
        """finalize's exported model files (``hpo.retrain.load_model``) for the present best and
        baseline, where they are on this machine: one sharing a PostgreSQL study, or an older
        hpo's finalize, has none; an export of an earlier best is not this best's."""
        found: dict[Role, str] = {}
        sides: tuple[tuple[Role, FrozenTrial | None], ...] = (
            ("best", self.best),
            ("baseline", self.baseline),
        )
        for role, trial in sides:
            record = self.final_for(trial, role)
            if record is not None and (path := record.get("model")) and Path(path).is_file():
                found[role] = path
        return found


def read_study(name: str, storage: str) -> StudyData:
    """Read ``name`` from ``storage``; a missing storage or study is an error naming what exists."""
    _, study = load_existing_study(storage, name)
    trials = tuple(study.get_trials(deepcopy=False))
    return StudyData(name, mask_url(storage), dict(study.user_attrs), trials, study)
