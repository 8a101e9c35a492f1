"""``hpo run``'s --seed, --epochs and --precision: checked like a spec file's values, applied
to the spec, and handed to each --jobs worker on its command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hpo.config import PRECISION_CHOICES, SEED_MAX, PrecisionChoice, of_kind
from hpo.spec import SpecError, StudySpec


@dataclass(frozen=True)
class SpecOverrides:
    """``hpo run``'s --seed, --epochs and --precision as given (None: the spec's own). Kept
    apart from the spec they change so that each --jobs worker gets them on its command line
    and applies them to the spec file itself, as its parent did."""

    seed: int | None = None
    epochs: int | None = None
    precision: PrecisionChoice | None = None

    def apply(self, spec: StudySpec) -> StudySpec:
        """``spec`` with these overrides, validated like the file's values."""
        problems = []
        if self.precision is not None and self.precision not in PRECISION_CHOICES:
            problems.append(
                f"--precision must be {'|'.join(PRECISION_CHOICES)} (got {self.precision!r})"
            )
        if self.epochs is not None and (not of_kind(self.epochs, "int") or self.epochs < 1):
            problems.append(f"--epochs must be an integer >= 1 (got {self.epochs!r})")
        if self.seed is not None and (problem := seed_problem(self.seed)):
            problems.append(problem)
        if problems:
            raise SpecError("; ".join(problems))
        return dataclasses.replace(
            spec,
            seed=spec.seed if self.seed is None else self.seed,
            epochs=spec.epochs if self.epochs is None else self.epochs,
            precision=spec.precision if self.precision is None else self.precision,
        )

    def argv(self) -> list[str]:
        """The ``hpo run`` flags that give these overrides, the ones given only."""
        flags = (("--seed", self.seed), ("--epochs", self.epochs), ("--precision", self.precision))
        return [arg for flag, value in flags if value is not None for arg in (flag, str(value))]


def seed_problem(seed: object) -> str | None:
    """What is wrong with a --seed (``hpo run``'s, ``hpo baseline``'s), if anything: numpy's
    and Optuna's generators take 32 bits."""
    if isinstance(seed, int) and of_kind(seed, "int") and 0 <= seed <= SEED_MAX:
        return None
    return f"--seed must be an integer in [0, {SEED_MAX}] (got {seed!r})"
