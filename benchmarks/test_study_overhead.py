"""Per-trial cost of the study machinery itself, per storage, with a trivial objective.

Measured at two study sizes so that growth with the number of stored trials is visible: each
``ask`` makes the sampler read the trials already stored, so an RDB storage slows as it fills.
The two sizes alternate round by round, each round in a new study of the same storage, made
outside the timing.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from benchmarks.alternate import Variant, alternate
from tests.support.postgres import PostgresServer, binaries, start_server

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer | None]:
    if binaries() is None:
        if os.environ.get("CI"):  # the PostgreSQL figure must not vanish from CI's smoke
            pytest.fail("no PostgreSQL server binaries; CI installs them: a broken setup")
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


def _storage(kind: str, tmp_path: Path, postgres: PostgresServer | None) -> str | None:
    if kind == "in-memory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'bench.db'}"
    if postgres is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    return postgres.url


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


class _Study:
    """A fresh study per round, made untimed (``prepare``), then filled with trials (``run``)."""

    def __init__(self, url: str | None, n_trials: int) -> None:
        self.url, self.n_trials = url, n_trials
        self.study: optuna.Study | None = None

    def prepare(self) -> None:
        self.study = optuna.create_study(
            storage=self.url,
            study_name=f"bench-{uuid.uuid4().hex}",
            sampler=optuna.samplers.TPESampler(seed=0),
        )

    def run(self) -> int:
        assert self.study is not None
        self.study.optimize(_objective, n_trials=self.n_trials)
        return len(self.study.trials)


@pytest.mark.parametrize("storage_kind", ["in-memory", "sqlite", "postgresql"])
def test_study_overhead(
    benchmark, tmp_path: Path, postgres: PostgresServer | None, storage_kind: str, smoke: bool
) -> None:
    """100 and 1,000 trials, alternated; each round in a new study of the same storage."""
    url = _storage(storage_kind, tmp_path, postgres)
    variants = []
    for n_trials in (100, 1000):
        study = _Study(url, 10 if smoke else n_trials)
        name = f"test_study_overhead[{storage_kind}-{n_trials}]"
        variants.append(Variant(name, study.run, study.prepare))
    alternate(benchmark, variants, rounds=3)
    for v in variants:
        n = v.results[-1]
        assert all(r == n for r in v.results)
        v.extra_info |= {"n_trials": n, "ms_per_trial": statistics.median(v.round_s) * 1000 / n}
