"""Workers on a real PostgreSQL server (Debian's, on loopback, in a temporary directory): two
workers end at exactly the target; a worker killed mid-trial is replaced through the heartbeat; the
server stopped mid-study gives one clear error and the rerun finishes; the password never shows."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.lost_trials import Orphans
from hpo.storage import open_storage
from hpo.storage_url import with_driver
from hpo.trial import UNFINISHED
from tests.support.cli import (
    USER_ATTRS,
    Launcher,
    make_launcher,
    synthetic_data,
    wait_for_running,
    write_spec,
)
from tests.support.postgres import PASSWORD, PostgresServer, binaries, start_server


class SpecSize(TypedDict):
    """Keyword arguments for ``write_spec``: how long a trial trains, and on which layers."""

    epochs: int
    hidden1: int
    hidden2: int


EPOCHS = 4
# Wide layers on 6,000 images: epochs of about 0.4 s, long enough to be caught in the middle.
WIDE: SpecSize = {"epochs": 5, "hidden1": 512, "hidden2": 256}


def _missing() -> str | None:
    if binaries() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    if not (importlib.util.find_spec("psycopg") or importlib.util.find_spec("psycopg2")):
        return "no PostgreSQL driver (pip install -e '.[postgres]')"
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI installs it, so this is a broken setup")
        pytest.skip(missing)
    # Not under pytest's tmp_path: as root the server runs as `postgres`, which cannot enter
    # pytest's private (0700) directory.
    with tempfile.TemporaryDirectory(prefix="hpo-pg-") as tmp:
        pg = start_server(Path(tmp))
        try:
            yield pg
        finally:
            pg.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_data(tmp_path_factory.mktemp("mnist"))


@pytest.fixture()
def launcher(tmp_path: Path, data_dir: Path) -> Launcher:
    return make_launcher(tmp_path, data_dir, tmp_path)


def load(server: PostgresServer, name: str) -> list[FrozenTrial]:
    storage = optuna.storages.RDBStorage(with_driver(server.url))
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    finally:
        storage.engine.dispose()


def wait_mid_trial(
    server: PostgresServer, name: str, proc: subprocess.Popen[str], timeout: float = 120
) -> list[FrozenTrial] | None:
    """Poll until both workers are inside a trial with an epoch done and two or more to go, and
    return those trials; None if the run ended or time ran out first."""
    storage = optuna.storages.RDBStorage(with_driver(server.url))
    try:
        return wait_for_running(
            proc,
            storage,
            name,
            lambda trials: (
                len(trials) == 2
                and all(1 <= len(t.intermediate_values) <= WIDE["epochs"] - 2 for t in trials)
            ),
            timeout=timeout,
            poll=0.02,
        )
    finally:
        storage.engine.dispose()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def assert_exact(trials: list[FrozenTrial], target: int, epochs: int = EPOCHS) -> None:
    """Exactly ``target`` finished, every number once, nothing running, every finished trial
    whole (no half-written trial counted), anything left queued untrained."""
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(finished(trials)) == target
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for t in finished(trials):
        assert set(t.user_attrs) == USER_ATTRS, t.number
        assert t.user_attrs["reason"] == "" and t.user_attrs["epochs_run"] == epochs
        assert all(len(v) == epochs for v in t.user_attrs["curves"].values())
        assert t.value == t.user_attrs["curves"]["val_acc"][-1]
        assert sorted(t.intermediate_values) == list(range(epochs))
    for t in trials:
        if t.state == TrialState.WAITING:
            assert t.intermediate_values == {} and "curves" not in t.user_attrs


def assert_no_password(*texts: str, where: Path | None = None) -> None:
    for text in texts:
        assert PASSWORD not in text
    for path in where.rglob("*") if where else []:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_orphans_are_found_on_postgresql_and_only_after_their_grace(
    server: PostgresServer,
) -> None:
    """The orphan query (a running trial with no heartbeat row) against PostgreSQL's own types:
    the live trial with a heartbeat is left alone, the orphan failed and queued again."""
    storage = open_storage(server.url, heartbeat_interval=1)
    try:
        study = optuna.create_study(storage=storage, study_name=f"orphans-{uuid.uuid4().hex[:8]}")
        with pytest.warns(UserWarning):
            orphan, live = study.ask(), study.ask()
        storage.record_heartbeat(live._trial_id)
        orphans = Orphans(study, storage, grace=0.5)
        assert orphans.sweep() == []  # first seen now: not yet past its grace
        time.sleep(0.6)
        assert orphans.sweep() == [orphan.number]
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        assert states == {
            orphan.number: TrialState.FAIL,
            live.number: TrialState.RUNNING,
            2: TrialState.WAITING,  # the orphan's parameters, queued again
        }
        assert orphans.sweep() == []
    finally:
        storage.engine.dispose()


def test_two_workers_share_a_postgresql_study_and_end_at_exactly_the_target(
    server: PostgresServer, launcher: Launcher
) -> None:
    name = f"two-{uuid.uuid4().hex[:6]}"
    spec = write_spec(launcher.cwd / "tiny.toml", epochs=EPOCHS)
    cmd = launcher.run_args(spec, name, server.url, 8, "--jobs", "2", "--format", "json")
    done = launcher.run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load(server, name)
    assert_exact(trials, 8)
    assert not [t for t in trials if t.state == TrialState.FAIL]
    assert len({repr(sorted(t.params.items())) for t in finished(trials)}) == 8
    summary = json.loads(done.stdout)
    assert summary["complete"] == 8 and summary["final"]["best"]["trial"] is not None
    assert summary["storage"] == server.url.replace(PASSWORD, "***")
    assert server.url.replace(PASSWORD, "***") in done.stderr  # named, masked
    assert_no_password(done.stdout, done.stderr, json.dumps([t.user_attrs for t in trials]))
    assert_no_password(where=launcher.cwd / "runs")


def test_a_worker_killed_mid_trial_is_failed_by_the_heartbeat_and_its_params_rerun(
    server: PostgresServer, launcher: Launcher
) -> None:
    name = f"kill-{uuid.uuid4().hex[:6]}"
    spec = write_spec(launcher.cwd / "wide.toml", **WIDE)
    cmd = launcher.run_args(spec, name, server.url, 6, "--jobs", "2", "--no-finalize")
    proc = launcher.popen(cmd)
    running = wait_mid_trial(server, name, proc)
    workers = children(proc.pid)
    assert running is not None and len(workers) == 2, proc.stderr.read() if proc.stderr else ""
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)

    # The other worker re-ran its trial to the end (at once: it saw the process gone), so the
    # parent says which worker died, as a note, and exits 0.
    assert proc.returncode == 0, err[-3000:]
    assert re.search(r"note: worker \d \(cpu\) was killed by SIGKILL; the others re-ran", err)
    assert "Traceback" not in err
    trials = load(server, name)
    assert_exact(trials, 6, WIDE["epochs"])
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs["reason"] == UNFINISHED
    assert lost[0].number in {t.number for t in running}  # it was one of the trials in flight
    rerun = [
        t
        for t in trials
        if t.number > lost[0].number and t.user_attrs.get("origin") == lost[0].number
    ]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == lost[0].params
    assert rerun[0].user_attrs["seed"] == lost[0].user_attrs["seed"]
    assert_no_password(out, err)


def test_the_server_stopped_mid_study_gives_one_clear_error_and_the_rerun_finishes(
    server: PostgresServer, launcher: Launcher
) -> None:
    name = f"stop-{uuid.uuid4().hex[:6]}"
    masked = server.url.replace(PASSWORD, "***")
    spec = write_spec(launcher.cwd / "wide.toml", **WIDE)
    cmd = launcher.run_args(spec, name, server.url, 6, "--jobs", "2")
    proc = launcher.popen(cmd)
    try:
        assert wait_mid_trial(server, name, proc) is not None
    finally:
        server.stop()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        server.start()

    assert proc.returncode == 1 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("hpo: error:")]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith(f"hpo: error: 2 of 2 workers stopped: lost the storage {masked}: ")
    assert errors[0].endswith("When the database is back, rerun the same command to go on.")
    assert "Traceback" not in err and "Exception in thread" not in err
    halfway = load(server, name)
    assert [t for t in halfway if t.state == TrialState.RUNNING]  # what the outage left behind
    for t in halfway:  # none of it counted as finished
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["reason"] == "" and t.user_attrs["epochs_run"] == WIDE["epochs"]

    again = launcher.run(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load(server, name)
    assert_exact(trials, 6, WIDE["epochs"])
    for t in trials:
        if t.state == TrialState.FAIL:  # the trials the outage cut: failed, run again in full
            assert t.user_attrs["reason"] == UNFINISHED
            assert any(u.user_attrs.get("origin") == t.number for u in finished(trials))
    assert_no_password(out, err, again.stdout, again.stderr, where=launcher.cwd / "runs")
