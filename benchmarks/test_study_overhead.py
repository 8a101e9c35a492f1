"""Per-trial cost of the study machinery itself, per storage, with a trivial objective.

Measured at two study sizes so that growth with the number of stored trials is visible: each
``ask`` makes the sampler read the trials already stored, so an RDB storage slows as it fills.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.support.postgres import PostgresServer, binaries, start_server

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer | None]:
    if binaries() is None:
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


@pytest.mark.parametrize("n_trials", [100, 1000])
@pytest.mark.parametrize("storage_kind", ["in-memory", "sqlite", "postgresql"])
def test_study_overhead(
    benchmark,
    tmp_path: Path,
    postgres: PostgresServer | None,
    storage_kind: str,
    n_trials: int,
    smoke: bool,
) -> None:
    url = _storage(storage_kind, tmp_path, postgres)
    n = 10 if smoke else n_trials

    def run() -> optuna.Study:
        study = optuna.create_study(
            storage=url,
            study_name=f"bench-{uuid.uuid4().hex}",
            sampler=optuna.samplers.TPESampler(seed=0),
        )
        study.optimize(_objective, n_trials=n)
        return study

    study = benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(study.trials) == n
    benchmark.extra_info["n_trials"] = n
    if benchmark.stats is not None:
        benchmark.extra_info["ms_per_trial"] = benchmark.stats.stats.median * 1000 / n
