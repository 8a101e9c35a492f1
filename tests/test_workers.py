"""`hpo run --jobs N`: worker placement and threads, distinct sampling across workers, the exact
trial target under concurrency, and real worker processes on SQLite (four at once, Ctrl-C)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

import hpo.search
import hpo.workers
from hpo.algorithms import make_sampler
from hpo.device import DeviceError, WorkerPlan, crowded_note, plan_workers, worker_threads
from hpo.errors import HpoError
from hpo.liveness import is_gone
from hpo.progress import Counts, Progress, Running
from hpo.sampling import TrialSeededSampler, sampler_seed
from hpo.search import run_one, surplus
from hpo.space import suggest
from hpo.spec import StudySpec
from hpo.spec_parse import parse_spec
from hpo.storage import open_storage
from hpo.study_setup import open_study
from hpo.worker_outcomes import (
    Kind,
    Status,
    WorkerOutcome,
    WorkerResult,
    failure_message,
    outcome_of,
    parse_outcome,
    worker_warnings,
)
from hpo.workers import run_parallel, run_workers, worker_env
from tests.support.cli import (
    USER_ATTRS,
    Launcher,
    make_launcher,
    synthetic_data,
    wait_for_running,
    write_spec,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
    pytest.mark.filterwarnings("ignore:Fixed parameter .* is out of range"),  # the baseline's
]
SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 0.3, "log": True},
    "momentum": {"low": 0.5, "high": 0.95},
    "hidden1": {"low": 8, "high": 32, "log": True},
    "schedule": {"choices": ["tutorial", "step", "cosine", "none"]},
    "gamma": {"low": 0.5, "high": 0.99},
    "step_every": {"low": 1, "high": 3},
    "head": "logits",
}


def spec_with(sampler: dict[str, Any], seed: int = 0) -> StudySpec:
    return parse_spec(
        {"seed": seed, "epochs": 1, "sampler": sampler, "pruner": {"name": "none"}, "space": SPACE}
    )


# ---------------------------------------------------------------------- placement and threads


@pytest.mark.parametrize(
    ("device", "jobs", "gpus", "devices"),
    [
        # no GPU: one worker unless asked for more, all on the CPU (or MPS)
        ("auto", None, 0, ("cpu",)),
        ("auto", 3, 0, ("cpu",) * 3),
        ("cpu", None, 4, ("cpu",)),
        ("cpu", 2, 4, ("cpu", "cpu")),
        # GPUs with auto or cuda: one worker per GPU by default, each pinned to its own
        ("auto", None, 4, ("cuda:0", "cuda:1", "cuda:2", "cuda:3")),
        ("cuda", None, 2, ("cuda:0", "cuda:1")),
        ("auto", 1, 4, ("cuda:0",)),
        ("cuda", 5, 2, ("cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0")),
        # one named GPU: every worker on it
        ("cuda:1", None, 4, ("cuda:1",)),
        ("cuda:1", 3, 4, ("cuda:1",) * 3),
    ],
)
def test_jobs_and_device_combine_as_the_readme_table_says(
    device: str, jobs: int | None, gpus: int, devices: tuple[str, ...]
) -> None:
    plan = plan_workers(device, jobs, cuda_count=gpus, cpu_count=16)
    assert plan.devices == devices
    assert plan.jobs == len(devices)
    assert plan.threads == (None if len(devices) == 1 else 16 // len(devices))


def test_auto_without_a_gpu_uses_mps_where_there_is_one() -> None:
    assert plan_workers("auto", 2, cuda_count=0, cpu_count=8, mps=True) == WorkerPlan(
        ("mps", "mps"), 4
    )


def test_the_device_is_read_as_resolve_device_reads_it() -> None:
    # `--device " CUDA "` trains on the GPUs as resolve_device would: one worker on each.
    plan = plan_workers(" CUDA ", None, cuda_count=2, cpu_count=16)
    assert plan == WorkerPlan(("cuda:0", "cuda:1"), 8)
    with pytest.raises(ValueError, match=r"jobs must be >= 1 \(got 0\)"):
        plan_workers("cpu", 0, cuda_count=0, cpu_count=2)


def test_a_gpu_that_is_not_there_is_refused_before_any_worker_starts() -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        plan_workers("cuda", 2, cuda_count=0, cpu_count=2)
    with pytest.raises(DeviceError, match=r"only 2 CUDA device\(s\)"):
        plan_workers("cuda:2", None, cuda_count=2, cpu_count=2)


def test_threads_are_split_between_workers_and_never_oversubscribed() -> None:
    assert worker_threads(1, 2) is None  # one worker: torch's own default
    assert worker_threads(2, 2) == 1  # the measured best on this 2-core CPU
    assert worker_threads(4, 2) == 1  # at least one each, never 0
    assert worker_threads(3, 16) == 5
    for jobs in range(2, 20):
        for cpus in (1, 2, 8, 16):
            threads = worker_threads(jobs, cpus)
            assert threads is not None and threads >= 1
            assert threads * jobs <= max(cpus, jobs)


def test_more_cpu_workers_than_cpus_get_a_note_naming_the_jobs_that_fit() -> None:
    def note(device: str, jobs: int, cpus: int, gpus: int = 0) -> str | None:
        return crowded_note(plan_workers(device, jobs, cuda_count=gpus, cpu_count=cpus), cpus)

    assert note("cpu", 4, 2) == (
        "4 workers on 2 usable CPU(s) take turns on them: each trial runs slower and the study "
        "no faster; --jobs 2 uses every CPU"
    )
    assert note("cpu", 2, 2) is None and note("auto", 1, 1) is None
    assert note("auto", 4, 2, gpus=1) is None  # GPU workers: the CPUs only feed them


def test_the_plan_line_counts_the_workers_on_each_device_and_their_threads() -> None:
    # What `hpo run --jobs` prints before starting: how many workers share each device.
    plan = hpo.workers.describe_plan(["cuda:0", "cuda:1", "cuda:0", "cpu"], 2)
    assert plan == "workers: 4 (2 on cuda:0, 1 on cuda:1, 1 on cpu, 2 thread(s) each)"
    assert hpo.workers.describe_plan(["cuda:0"], None) == "workers: 1 (1 on cuda:0)"


# ---------------------------------------------------------------------- sampling across workers


@pytest.mark.parametrize(
    "sampler",
    [{"name": "tpe", "n_startup_trials": 2}, {"name": "random"}, {"name": "qmc"}],
    ids=["tpe", "random", "qmc"],
)
def test_two_workers_with_the_same_seed_never_propose_the_same_params(
    tmp_path: Path, sampler: dict[str, Any]
) -> None:
    """Two processes' studies on one storage, asking in lockstep: each sees the same history."""
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    spec = spec_with(sampler)
    open_study(spec, storage, "s")
    a, b = (
        optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(spec)) for _ in "ab"
    )
    seen: list[dict[str, Any]] = []
    for step in range(6):
        ta, tb = a.ask(), b.ask()  # both ask before either tells: the same history
        pa, pb = suggest(ta, spec.space), suggest(tb, spec.space)
        a.tell(ta, float(step))
        b.tell(tb, float(step))
        assert pa != pb, (step, pa)
        seen += [pa, pb]
    assert len({repr(sorted(p.items())) for p in seen}) == len(seen) == 12


def test_plain_seeded_samplers_do_collide_which_is_what_the_reseeding_prevents(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    optuna.create_study(study_name="s", storage=url)
    lr: dict[str, BaseDistribution] = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 0.3, log=True)
    }
    a, b = (
        optuna.load_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(0))
        for _ in "ab"
    )
    assert a.ask(lr).params == b.ask(lr).params
    plain = optuna.load_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(0))
    assert plain.ask(lr).params != a.ask(lr).params  # one sampler does move on between trials


def test_the_per_trial_seed_depends_on_both_the_study_seed_and_the_trial_number() -> None:
    seeds = {sampler_seed(s, n) for s in range(5) for n in range(50)}
    assert len(seeds) == 250
    assert sampler_seed(0, 1) != sampler_seed(1, 0)
    assert sampler_seed(3, 7) == sampler_seed(3, 7)


def test_the_wrapper_builds_its_sampler_from_each_trials_number() -> None:
    built: list[int] = []

    def build(seed: int) -> optuna.samplers.BaseSampler:
        built.append(seed)
        return optuna.samplers.RandomSampler(seed=seed)

    study = optuna.create_study(sampler=TrialSeededSampler(build, 11))
    for _ in range(3):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.0)
    assert built == [11] + [sampler_seed(11, n) for n in range(3)]


@pytest.mark.parametrize("hyperband", [False, True], ids=["median", "hyperband"])
def test_a_rerun_takes_its_first_attempts_seed_and_no_new_trial_shares_one(
    hyperband: bool,
) -> None:
    """Trials 2, 5 and 8 re-run 1, 4 and 7 (as lost_trials.requeue queues them). Under Hyperband
    the sampler is handed a per-bracket view of the study, which hides other brackets' re-runs."""
    built: list[int] = []

    def build(seed: int) -> optuna.samplers.BaseSampler:
        built.append(seed)
        return optuna.samplers.RandomSampler(seed=seed)

    pruner = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=20, reduction_factor=3)
        if hyperband
        else optuna.pruners.MedianPruner()
    )
    study = optuna.create_study(sampler=TrialSeededSampler(build, 11), pruner=pruner)
    x: dict[str, BaseDistribution] = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for number in range(12):
        if number in (2, 5, 8):
            study.enqueue_trial({}, user_attrs={"origin": number - 1})
        trial = study.ask(x)
        trial.report(0.5, 0)
        trial.should_prune()  # Hyperband files the trial in its bracket here
        study.tell(trial, 0.0)
    draws = [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 8]  # each re-run repeats the draw before it
    assert built[1:] == [sampler_seed(11, i) for i in draws]
    xs = [t.params["x"] for t in study.trials]
    assert len(set(xs)) == 9 and all(xs[n] == xs[n - 1] for n in (2, 5, 8))


# ---------------------------------------------------------------------- the exact target


def test_a_trial_asked_past_the_target_goes_back_to_the_queue_untrained(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat_interval=1)
    spec = spec_with({"name": "random"})
    study = open_study(spec, storage, "s")
    study.tell(study.ask(), 0.5)  # trial 0: the baseline, finished
    first = study.ask()  # trial 1: a worker took the last place (target 2) and trains it
    second = study.ask()  # trial 2: another worker asked at the same moment
    assert not surplus(study, first.number, 2)
    assert surplus(study, second.number, 2)

    # run_one does the same check and hands the trial back without training or a heartbeat.
    ctx: Any = None  # never used: the trial must not train
    storage.set_trial_state_values(second._trial_id, TrialState.WAITING)
    assert run_one(study, storage, ctx, 2) is None
    back = study.trials[2]
    assert back.state == TrialState.WAITING
    assert back.params == {} and back.user_attrs == {} and back.intermediate_values == {}

    # The place frees up when trial 1 fails: the queued trial is the next one trained.
    study.tell(first, state=TrialState.FAIL)
    again = study.ask()
    assert again.number == 2 and not surplus(study, again.number, 2)


def test_a_queued_trial_with_a_lower_number_has_the_place_first(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = open_study(spec_with({"name": "random"}), storage, "s")  # trial 0 queued
    late = study._storage.create_new_trial(study._study_id)  # a fresh trial 1, running
    number = study._storage.get_trial(late).number
    assert surplus(study, number, 1)  # the queued baseline is ahead of it
    popped = study.ask()
    assert popped.number == 0 and not surplus(study, 0, 1)


def test_a_stop_during_the_place_check_hands_the_trial_back_to_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked but not yet training, the trial has no heartbeat: left RUNNING it would hold a
    # place until a sweeper took it for lost, and its queued parameters would be failed.
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = open_study(spec_with({"name": "random"}), storage, "s")  # the baseline queued

    def stopped(*_: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.search, "surplus", stopped)
    ctx: Any = None  # never used: the trial must not train
    with pytest.raises(KeyboardInterrupt):
        run_one(study, storage, ctx, 2)
    (back,) = study.trials
    assert back.state == TrialState.WAITING and back.user_attrs == {"is_baseline": True}


# ---------------------------------------------------------------------- the parent's side


def result(
    index: int, code: int, status: Status, kind: Kind, message: str, tail: str = ""
) -> WorkerResult:
    return WorkerResult(index, "cpu", code, WorkerOutcome(status, kind, message), tail)


def test_a_lost_database_is_reported_once_however_many_workers_it_stopped() -> None:
    lost = "lost the storage postgresql://hpo:***@db/hpo: OperationalError: refused."
    results = [result(i, 1, "error", "storage", lost) for i in range(4)]
    assert failure_message(results, 30) == f"4 of 4 workers stopped: {lost}"
    assert failure_message([result(0, 0, "ok", "", "")] * 2, 30) is None


def test_hpos_own_warnings_from_the_workers_are_said_once_with_their_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fell_back = (
        "/site/hpo/train.py:290: RuntimeWarning: no ahead-of-time CPU step (RuntimeError: no C++ "
        "compiler); using torch.compile\n  on_prepared(kind)\n"
    )
    noise = "/site/torch/nn/functional.py:12: UserWarning: something of torch's\n"
    # A worker's first trial warns, then a long run logs more than the tail the parent keeps.
    later = "x" * (hpo.workers.TAIL + 1000) + "\n"
    writes = [fell_back + noise + later, "", fell_back + fell_back]
    script = "import sys; sys.stderr.write(sys.argv[1])"
    monkeypatch.setattr(
        hpo.workers, "worker_command", lambda argv: [sys.executable, "-c", script, *argv]
    )
    results = run_workers([[w] for w in writes], ["cpu"] * 3, dict(os.environ), tmp_path)
    assert fell_back not in results[0].stderr_tail  # the warning is not in what is kept
    assert worker_warnings(results) == [
        "worker(s) 0, 2: RuntimeWarning: no ahead-of-time CPU step (RuntimeError: no C++ "
        "compiler); using torch.compile"
    ]


def test_each_other_failure_is_named_once_with_its_worker() -> None:
    message = failure_message(
        [
            result(0, -9, "error", "signal", "was killed by SIGKILL"),
            result(1, 1, "error", "crash", "crashed: ValueError: x", "Traceback\nValueError: x"),
            result(2, 1, "error", "crash", "crashed: ValueError: x", "Traceback"),
            result(3, 0, "ok", "", ""),
        ],
        30,
    )
    assert message is not None
    lines = message.splitlines()
    assert lines[0].startswith("worker 0 (cpu) was killed by SIGKILL; the trial it was running")
    assert "elsewhere after 30 s without a heartbeat" in lines[0]
    assert lines[1:] == ["worker 1 (cpu) crashed: ValueError: x", "Traceback", "ValueError: x"]
    # A worker stopped by a signal to it alone (the run was not): how to finish is said too.
    stopped, code = outcome_of(KeyboardInterrupt())
    alone = failure_message([WorkerResult(0, "cpu", code, stopped)], 30)
    assert alone == (
        "worker 0 (cpu) was interrupted; its trial was queued again. Rerun the same command to "
        "finish and finalize the study"
    )


@pytest.mark.parametrize("fails", ["watch", "start", "ctrl-c while starting"])
def test_workers_are_stopped_when_the_parent_can_no_longer_watch_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    # The display's read fails with a bug, the third worker cannot be started, or Ctrl-C comes
    # while it starts: the two started must not go on training unseen.
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    monkeypatch.setattr(hpo.workers, "worker_command", lambda argv: sleeper)
    real_start, started = hpo.workers._start, []

    def start(index: int, *args: Any) -> Any:
        if index == 2 and fails == "start":
            raise OSError("no more processes")
        if index == 2 and fails == "ctrl-c while starting":
            raise KeyboardInterrupt
        started.append(real_start(index, *args))
        return started[-1]

    def watch() -> None:
        if fails == "watch":
            raise RuntimeError("a bug in the display")

    monkeypatch.setattr(hpo.workers, "_start", start)
    raised = {"watch": RuntimeError, "start": OSError}.get(fails, KeyboardInterrupt)
    with pytest.raises(raised):
        run_workers([[]] * 3, ["cpu"] * 3, dict(os.environ), tmp_path, watch=watch)
    assert len(started) == (3 if fails == "watch" else 2)
    assert all(w.proc.returncode is not None for w in started)  # ended and reaped


def test_a_second_ctrl_c_kills_workers_still_busy_queuing_their_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker slow to stop after the first Ctrl-C (stuck in a write, say): the second one is
    # the user's "stop now", and must not leave the parent waiting for it.
    deaf = (
        "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)"
    )
    monkeypatch.setattr(hpo.workers, "worker_command", lambda argv: [sys.executable, "-c", deaf])
    presses = 0

    def watch() -> None:  # Ctrl-C twice, once the worker ignores SIGINT
        nonlocal presses
        while not (tmp_path / "worker-0.out").read_text():
            time.sleep(0.01)
        if presses < 2:
            presses += 1
            raise KeyboardInterrupt

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_workers([[]], ["cpu"], dict(os.environ), tmp_path, watch=watch, poll_s=0.05)
    assert presses == 2
    assert time.monotonic() - began < 15  # killed, not waited for until its sleep ends


def test_workers_that_all_finished_cleanly_leave_no_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "killed from outside, the others finished the study" note is for killed workers only:
    # a clean run printed "note: None" under its display.
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    study.set_user_attr("epochs", 1)
    study.add_trial(optuna.trial.create_trial(value=0.5))
    done = f"print({WorkerOutcome('ok').to_json()!r})"
    monkeypatch.setattr(hpo.workers, "worker_command", lambda argv: [sys.executable, "-c", done])
    said = io.StringIO()
    run_parallel([[], []], WorkerPlan(("cpu", "cpu"), 1), study, 1, "sqlite://", 30, said)
    assert said.getvalue() == "1 of 1 trials finished at start\n"


class _Display:
    """What StudyWatch tells the progress display, as it tells it."""

    def __init__(self) -> None:
        self.finished: list[tuple[int, str, Counts, float | None]] = []
        self.runs: list[list[Running]] = []

    def trial_finished(self, number: int, said: str, counts: Counts, seconds: float) -> None:
        self.finished.append((number, said, counts, seconds))

    def running(self, trials: list[Running]) -> None:
        self.runs.append(trials)


def test_the_parent_says_each_finished_trial_once_in_the_order_they_ended() -> None:
    # Workers end trials out of number order: each line reads the study as it stood when that
    # trial ended, so the counts only ever go up.
    from hpo.study_watch import StudyWatch

    study = optuna.create_study(direction="maximize")
    t0 = datetime.datetime(2024, 1, 1, 12, 0, 0)

    def ended(value: float, start: int, end: int) -> None:
        trial = optuna.trial.create_trial(value=value)
        trial.datetime_start = t0 + datetime.timedelta(seconds=start)
        trial.datetime_complete = t0 + datetime.timedelta(seconds=end)
        study.add_trial(trial)

    ended(0.5, 0, 5)  # finished before the parent first looked: not said again
    display = _Display()
    watch = StudyWatch(study, 5, 4, cast(Progress, display))
    ended(0.7, 5, 30)  # trial 1, ended last
    ended(0.9, 6, 20)  # trial 2, ended before it
    running = study.ask()
    running.set_user_attr("epochs_run", 2)
    running.set_user_attr("wall_seconds", 8.0)
    watch()
    watch()  # nothing new: nothing said twice
    assert [(n, said, c.complete, c.best_trial, s) for n, said, c, s in display.finished] == [
        (2, "complete: 0.9000", 2, 2, 14.0),
        (1, "complete: 0.7000", 3, 2, 25.0),
    ]
    assert len(display.runs) == 2
    (live,) = display.runs[-1]
    assert (live.number, live.epochs_done, live.epochs, live.at_last_epoch) == (3, 2, 4, 8.0)


def test_the_storage_url_reaches_the_workers_through_the_environment_not_argv() -> None:
    from hpo.cli import build_parser
    from hpo.cli.run import tuning_options
    from hpo.tuning import worker_argv

    url = "postgresql://hpo:pw-in-url@db/hpo"
    flags = ["--seed", "3", "--precision", "bf16", "--no-compile"]
    args = build_parser().parse_args(["run", "--storage", url, "--study", "s", *flags])
    argv = worker_argv(tuning_options(args), 1, "cuda:1", 2)
    assert not [a for a in argv if "pw-in-url" in a]  # `ps` shows argv to every user
    assert argv[:5] == ["run", "--worker", "1", "--jobs", "2"]
    assert {"--device", "cuda:1", "--no-finalize", *flags} <= set(argv)
    assert argv[argv.index("--precision") + 1] == "bf16"
    env = worker_env(url, 1)
    assert env["HPO_STORAGE"] == url and env["OMP_NUM_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == "1"  # MKL's own pool (oneDNN, BLAS) takes its share too
    # The study's heartbeat, once tune has read it: every process of a study beats alike.
    beating = worker_argv(dataclasses.replace(tuning_options(args), heartbeat=4), 1, "cpu", 2)
    assert beating[beating.index("--heartbeat") + 1] == "4" and "--heartbeat" not in argv


def test_a_worker_reads_the_target_timeout_and_data_its_parent_runs_with(tmp_path: Path) -> None:
    """Each --jobs worker parses its command line as hpo run: the target (which restore_baseline
    may raise above --trials), the timeout and the data folder travel on it, or a worker would
    train past the target, past the deadline, or fetch MNIST again elsewhere."""
    from hpo.cli import build_parser
    from hpo.cli.run import tuning_options
    from hpo.tuning import worker_argv

    path = write_spec(tmp_path / "tiny.toml", trials=3)
    flags = ["--spec", str(path), "--trials", "5", "--timeout", "90.5"]
    flags += ["--data-dir", str(tmp_path / "mnist"), "--storage", "sqlite:///w.db"]
    parent = tuning_options(build_parser().parse_args(["run", *flags]))
    parent = dataclasses.replace(parent, trials=6)  # the target tune passes: one more
    worker = tuning_options(build_parser().parse_args(worker_argv(parent, 0, "cpu", 2)))
    assert (worker.trials, worker.timeout, worker.data_dir) == (6, 90.5, tmp_path / "mnist")
    assert worker.spec_path == path and worker.finalize is False and worker.jobs == 2
    # Without them, none: the spec's defaults and the data cache.
    bare = tuning_options(build_parser().parse_args(["run", "--spec", str(path)]))
    worker = tuning_options(build_parser().parse_args(worker_argv(bare, 0, "cpu", 2)))
    assert (worker.trials, worker.timeout, worker.data_dir) == (3, None, None)


@pytest.mark.parametrize(
    ("flags", "changed"),
    [
        (
            ["--seed", "7", "--epochs", "3", "--precision", "bf16"],
            {"seed": 7, "epochs": 3, "precision": "bf16"},
        ),
        (["--seed", "0", "--precision", "auto"], {"seed": 0, "precision": "auto"}),
        ([], {}),
    ],
)
def test_a_worker_applies_the_overrides_its_parent_applied(
    tmp_path: Path, flags: list[str], changed: dict[str, Any]
) -> None:
    """A --jobs worker loads the spec file again and applies the overrides on its command line:
    parsed by hpo run's own parser, they give it the spec its parent runs."""
    from hpo.cli import build_parser
    from hpo.cli.run import tuning_options
    from hpo.spec_parse import load_spec
    from hpo.tuning import worker_argv

    path = write_spec(tmp_path / "tiny.toml", epochs=2)  # seed 0, precision fp32
    parent = tuning_options(build_parser().parse_args(["run", "--spec", str(path), *flags]))
    worker = tuning_options(build_parser().parse_args(worker_argv(parent, 1, "cpu", 2)))
    assert parent.spec == dataclasses.replace(load_spec(path), **changed)
    assert worker.spec == parent.spec
    assert worker.overrides == parent.overrides  # --seed 0 too, though the file says 0


def test_the_one_display_lists_every_running_trial_and_shares_the_eta() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = Progress(out, tty=False, clock=lambda: now[0], workers=2)
    progress.start(Counts(6))
    progress.running([Running(3, 2, 5, 20.0), Running(4, 1, 5, 10.0)])
    progress.trial_finished(2, "complete: 0.9000", Counts(6, complete=2), seconds=50.0)
    # 4 trials of 50 s to go, 30 s of them already done, on 2 workers: 85 s
    assert progress.remaining() == pytest.approx((4 * 50 - 30) / 2)
    assert out.getvalue().splitlines()[-1] == (
        "trial 2 complete: 0.9000 | trials 2/6 | pruned 0 | failed 0 | best - "
        "| #3 epoch 2/5, #4 epoch 1/5 | 0:00 elapsed, ~1:25 left"
    )


def test_the_eta_waits_for_the_last_running_trials_own_epochs_not_the_mean_trial() -> None:
    """Pruned trials of one epoch pull the mean trial down: the last trial, 8 of 20 epochs in
    at 2 s each, still has 24 s to go, though the mean says it is done; a second worker with
    nothing left to run cannot share them."""
    now = [100.0]
    progress = Progress(None, clock=lambda: now[0], workers=2)
    progress.start(Counts(6))
    for number in range(5):
        progress.trial_finished(number, "pruned", Counts(6, pruned=number + 1), seconds=3.0)
    progress.running([Running(5, 8, 20, 16.0)])
    assert progress.remaining() == pytest.approx(12 * 2.0)
    # One not started yet: 3 s of work more, shared with the idle worker; the 24 s still rule.
    progress.start(Counts(7, pruned=5))
    assert progress.remaining() == pytest.approx(24.0)


def test_the_eta_falls_while_an_epoch_runs_not_only_when_it_ends() -> None:
    """The pace counts finished epochs only: counting the one under way, the --jobs parent's
    ETA, read between epochs, grew until the next epoch ended."""
    now = [0.0]
    for parent in (False, True):
        progress = Progress(None, clock=lambda: now[0], workers=2)
        progress.start(Counts(1))
        if not parent:  # this process's own trial: started at 0 s, its first epoch ended at 10 s
            now[0] = 0.0
            progress.trial_started(0, 12)
            now[0] = 10.0
            progress.epoch(0, 0)
        seen = []
        for t in (10.0, 15.0, 19.0):  # one epoch of 12 done, the second under way
            now[0] = t
            if parent:  # as the parent reads it: 10 s from the trial's start to its epoch's end
                progress.running([Running(0, 1, 12, t, at_last_epoch=10.0)])
            seen.append(progress.remaining())
        assert seen == pytest.approx([110.0, 105.0, 101.0])


# ---------------------------------------------------------------------- real workers on SQLite


def test_sqlite_transactions_take_the_write_lock_first_so_check_then_set_is_atomic(
    tmp_path: Path,
) -> None:
    """Optuna pops a queued trial (and fails a stale one) by reading its state, then writing it.
    Were the read outside the write lock, two workers could both pop the same trial."""
    path = tmp_path / "hpo.db"
    storage = open_storage(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM trials").all()  # a read, as Optuna's checks
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        # WAL: a plain reader elsewhere (a dashboard) is not blocked meanwhile
        assert other.execute("SELECT count(*) FROM trials").fetchone() == (0,)
    other.execute("BEGIN IMMEDIATE")  # free again once that transaction ended
    other.execute("ROLLBACK")
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_data(tmp_path_factory.mktemp("mnist"))


@pytest.fixture()
def launcher(tmp_path: Path, data_dir: Path) -> Launcher:
    return make_launcher(tmp_path, data_dir, tmp_path)


def finished(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def assert_exact(trials: list[optuna.trial.FrozenTrial], target: int, epochs: int) -> None:
    """Exactly ``target`` finished, every number once, nothing left running, every finished
    trial whole; a trial left queued was never trained."""
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(finished(trials)) == target
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for t in finished(trials):
        assert set(t.user_attrs) == USER_ATTRS, t.number
        assert t.user_attrs["reason"] == "" and t.user_attrs["epochs_run"] == epochs
        assert len(t.user_attrs["curves"]["val_acc"]) == epochs
        assert t.value == t.user_attrs["curves"]["val_acc"][-1]
    for t in trials:
        if t.state == TrialState.WAITING:
            assert t.intermediate_values == {} and "curves" not in t.user_attrs


def test_four_workers_share_one_sqlite_study_without_lock_errors(launcher: Launcher) -> None:
    spec = write_spec(launcher.cwd / "tiny.toml", epochs=2)
    url = f"sqlite:///{launcher.cwd / 'hpo.db'}"
    cmd = launcher.run_args(spec, "four", url, 10, "--jobs", "4", "--format", "json")
    done = launcher.run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "locked" not in done.stderr and "Traceback" not in done.stderr
    assert "workers: 4 (4 on cpu, 1 thread(s) each)" in done.stderr
    trials = optuna.load_study(study_name="four", storage=url).trials
    assert_exact(trials, 10, 2)
    assert not [t for t in trials if t.state == TrialState.FAIL]
    params = [repr(sorted(t.params.items())) for t in finished(trials)]
    assert len(set(params)) == 10  # four workers, one seed: no two trials alike
    # one display, from the parent: each finished trial announced once, in the order they ended
    lines = [line for line in done.stderr.splitlines() if line.startswith("trial ")]
    assert sorted(int(line.split()[1]) for line in lines) == [t.number for t in finished(trials)]
    counted = [int(line.split("| trials ")[1].split("/")[0]) for line in lines]
    assert counted == list(range(1, 11))
    # each worker trained on its share of this 2-core CPU: one thread
    assert all(t.user_attrs["device_name"].endswith(" x1 threads") for t in finished(trials))


def _two_workers_training(
    launcher: Launcher, study: str, trials: int, mid_trial: Callable[[FrozenTrial], bool]
) -> tuple[subprocess.Popen, str, list[FrozenTrial] | None]:
    """``hpo run --jobs 2`` of a wide network (6,000 images, epochs of about 0.4 s, long enough
    to be caught in the middle), once both workers' trials are ``mid_trial`` (None: never)."""
    spec = write_spec(launcher.cwd / "wide.toml", epochs=6, hidden1=512, hidden2=256)
    url = f"sqlite:///{launcher.cwd / 'hpo.db'}"
    args = launcher.run_args(spec, study, url, trials, "--jobs", "2", "--no-finalize")
    proc = launcher.popen(args)
    running = wait_for_running(
        proc, url, study, lambda ts: len(ts) == 2 and all(map(mid_trial, ts)), timeout=120
    )
    return proc, url, running


@pytest.mark.parametrize(
    ("sig", "code", "everyone"),
    [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False), (signal.SIGTERM, 143, True)],
)
def test_ctrl_c_or_sigterm_reaches_every_worker_once_and_queues_their_trials_again(
    launcher: Launcher, sig: signal.Signals, code: int, everyone: bool
) -> None:
    # everyone: a batch system's SIGTERM to every process of the job at once, workers included,
    # which then also get the parent's forwarded SIGINT while queuing their trials again.
    proc, url, running = _two_workers_training(
        launcher, "c", 20, lambda t: 1 <= len(t.intermediate_values) <= 3
    )
    sent = None
    if running is not None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in [int(c) for c in children] if everyone else []:
            os.kill(pid, sig)
        os.kill(proc.pid, sig)  # the parent only, as kill -INT would
        sent = sorted(t.number for t in running)
    out, err = proc.communicate(timeout=120)
    assert sent is not None, err[-3000:]
    assert proc.returncode == code and "Traceback" not in err
    assert out == ""
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for number in sent:
        assert trials[number].state == TrialState.FAIL
        assert trials[number].user_attrs["reason"].startswith("interrupted")
    queued = [t for t in trials if t.state == TrialState.WAITING and "origin" in t.user_attrs]
    assert sorted(t.user_attrs["origin"] for t in queued) == sent  # once each, not twice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_whose_parent_is_killed_outright_stop_and_queue_their_trials_again(
    launcher: Launcher,
) -> None:
    # SIGKILL: the parent forwards nothing, and nothing of it runs after; the kernel's signal
    # (prctl PR_SET_PDEATHSIG) is all that stops its workers training on unseen.
    logs = launcher.cwd / "tmp"  # where the dead parent's worker logs stay
    logs.mkdir()
    launcher = dataclasses.replace(launcher, env={**launcher.env, "TMPDIR": str(logs)})
    proc, url, running = _two_workers_training(
        launcher, "k", 400, lambda t: bool(t.intermediate_values)
    )
    workers = [t.user_attrs["process"] for t in running or []]
    try:
        proc.kill()
        proc.communicate(timeout=30)
        assert running is not None and all(workers), "two workers never trained at once"
        deadline = time.monotonic() + 60  # the bound on an orphan, not a speed claim
        while time.monotonic() < deadline and not all(is_gone(w) for w in workers):
            time.sleep(0.1)
        assert all(is_gone(w) for w in workers), "the workers outlived their parent"
    finally:
        for w in workers:  # never leave an orphan training (the code under test failed)
            if w and not is_gone(w):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w["pid"], signal.SIGKILL)
    trials = optuna.load_study(study_name="k", storage=url).trials
    for t in running or []:  # each stopped as Ctrl-C stops it: failed, and queued again
        assert trials[t.number].state == TrialState.FAIL
        assert trials[t.number].user_attrs["reason"].startswith("interrupted")
    queued = [t for t in trials if t.state == TrialState.WAITING and "origin" in t.user_attrs]
    assert sorted(t.user_attrs["origin"] for t in queued) == sorted(t.number for t in running)


def test_a_line_that_is_not_a_workers_outcome_is_not_read_as_one() -> None:
    ok = WorkerOutcome("ok")
    assert parse_outcome(ok.to_json()) == ok
    not_ours = ('{"status": "done", "kind": "", "message": ""}', '{"status": "ok"}', "ok", "[]")
    # A known status with a kind no worker reports: some other program's JSON, not an outcome.
    for line in (*not_ours, '{"status": "error", "kind": "oom", "message": "x"}'):
        assert parse_outcome(line) is None, line


@pytest.mark.parametrize("complete", [True, False])
def test_a_worker_killed_from_outside_is_a_note_once_the_others_finished_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, complete: bool
) -> None:
    # The OOM killer takes a worker; its trial was re-run by the others to the target.
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    study.set_user_attr("epochs", 1)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.5))
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(hpo.workers, "worker_command", lambda argv: killed)
    said = io.StringIO()
    target = 2 if complete else 3
    run = partial(run_parallel, [[]], WorkerPlan(("cpu",), 1), study, target, "sqlite://", 30)
    if complete:
        run(stream=said)
        assert "note: worker 0 (cpu) was killed by SIGKILL; the others re-ran" in said.getvalue()
    else:
        with pytest.raises(HpoError, match="Rerun the same command to finish"):
            run(stream=said)


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGRTMIN + 5])
def test_a_worker_killed_by_any_signal_is_said_by_its_name_or_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, number: int
) -> None:
    """Python's signal enum has no member for a real-time signal: reading a worker killed by one
    raised ValueError and lost every other worker's result."""
    monkeypatch.setattr(hpo.workers, "worker_command", lambda argv: ["sleep", "60"])
    worker = hpo.workers._start(0, [], "cpu", os.environ, tmp_path)
    os.kill(worker.proc.pid, number)
    got = hpo.workers._result(worker)
    assert got.returncode == -number
    expected = "SIGKILL" if number == signal.SIGKILL else f"signal {number}"
    assert got.outcome == WorkerOutcome("error", "signal", f"was killed by {expected}")
