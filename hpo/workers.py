"""``hpo run --jobs N``: N worker processes on this machine sharing one study, one display.

Each worker is ``hpo run`` itself (with the hidden ``--worker`` flag): the same loop as a single
run against the same storage (Optuna's distributed mode, nothing scheduled here), silent, on its
own device and share of the CPU threads. Workers live in their own process group, so a terminal's
Ctrl-C reaches the parent alone, which forwards it once; a worker killed outright leaves the
others running, its trial failed by the heartbeat and re-run by them. The parent draws the one
progress display from the storage and reports each distinct failure once.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal, TextIO, get_args

import optuna
from optuna.trial import TrialState

from hpo import interrupts
from hpo.device import WorkerPlan
from hpo.errors import HpoError
from hpo.progress import Progress, Running
from hpo.storage import StorageError, storage_failure
from hpo.storage_url import STORAGE_ENV
from hpo.study_summary import counts, counts_of, outcome

POLL_S = 1.0  # how often the parent reads the study for its display
TAIL = 3000  # characters of a crashed worker's stderr shown
# How long workers stopped because the parent cannot watch them any more have to queue their
# trials again before they are killed.
ABANDON_GRACE_S = 30.0


Status = Literal["ok", "error", "interrupted"]
Kind = Literal["", "storage", "error", "crash", "signal"]


@dataclass(frozen=True)
class WorkerOutcome:
    """What a worker reports on its stdout, as one JSON line, for the parent to read."""

    status: Status
    kind: Kind = ""  # storage errors are merged into one message
    message: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class WorkerResult:
    index: int
    device: str
    returncode: int
    outcome: WorkerOutcome
    stderr_tail: str = ""
    # (kind, message) of each warning hpo gave, from the whole stderr: the tail alone loses
    # a first trial's warning (a compiled step's fallback) under the rest of a long run's log.
    warnings: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.outcome.status == "ok"


@dataclass(frozen=True)
class _Worker:
    index: int
    device: str
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]


def worker_command(argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "hpo.cli", *argv]


def worker_env(
    storage_url: str, threads: int | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The parent's environment and ``extra``, plus the storage URL (kept off the command
    line, where ``ps`` shows it to every user) and the thread share, set before OpenMP starts
    in the worker."""
    env = {**os.environ, **(extra or {}), STORAGE_ENV: storage_url}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return env


def run_parallel(
    argvs: Sequence[Sequence[str]],
    plan: WorkerPlan,
    study: optuna.Study,
    target: int,
    storage_url: str,
    grace_s: int,
    stream: TextIO | None = sys.stderr,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run one worker per argv, as ``plan`` places them, to the end under one progress display
    on ``stream``; raise HpoError naming each distinct failure once. ``env``: added to the
    workers' environment."""
    progress = Progress(stream, workers=plan.jobs)
    progress.start(counts(study, target))
    epochs = int(study.user_attrs["epochs"])
    try:
        with tempfile.TemporaryDirectory(prefix="hpo-workers-") as logdir:
            results = run_workers(
                argvs,
                plan.devices,
                worker_env(storage_url, plan.threads, env),
                Path(logdir),
                watch=StudyWatch(study, target, epochs, progress),
            )
    finally:
        progress.close()
    if stream is not None:
        for line in worker_warnings(results):
            print(line, file=stream, flush=True)
    bad = [r for r in results if not r.ok]
    # Workers killed from outside (the OOM killer, say) whose trials the others re-ran to the
    # end: the study is whole, and the run goes on to finalize it. (Asked only then: after
    # other failures the database may be what is gone.)
    killed = bool(bad) and all(r.outcome.kind == "signal" for r in bad)
    if killed and counts(study, target).finished >= target:
        if stream is not None:
            print(f"note: {failure_message(results, grace_s, complete=True)}", file=stream)
        return
    problem = failure_message(results, grace_s)
    if problem:
        raise HpoError(problem)


# A warning as Python prints it, from hpo's code: "/x/hpo/step_compile.py:90: RuntimeWarning: ..."
_HPO_WARNING = re.compile(r"^\S*[/\\]hpo[/\\]\S+:\d+: (\w*Warning): (.*)$", re.MULTILINE)


def worker_warnings(results: Sequence[WorkerResult]) -> list[str]:
    """Each distinct warning hpo gave in the workers (a compiled step that fell back to a slower
    one, say), once, with the workers that gave it: a worker's stderr is otherwise shown only
    when it fails."""
    said: dict[str, list[int]] = {}
    for r in results:
        for kind, message in r.warnings:
            said.setdefault(f"{kind}: {message}", []).append(r.index)
    return [f"worker(s) {', '.join(map(str, i))}: {text}" for text, i in said.items()]


def run_workers(
    argvs: Sequence[Sequence[str]],
    devices: Sequence[str],
    env: Mapping[str, str],
    logdir: Path,
    *,
    watch: Callable[[], None] = lambda: None,
    poll_s: float = POLL_S,
) -> list[WorkerResult]:
    """Start one worker per argv and wait for all, calling ``watch`` every ``poll_s`` seconds.

    Ctrl-C or SIGTERM (KeyboardInterrupt here) is forwarded to the workers as SIGINT: each marks
    its trial failed and queues it again, then exits; a second one kills them. The first is
    raised again once all have ended."""
    workers: list[_Worker] = []
    stops: list[KeyboardInterrupt] = []  # Ctrl-C, or SIGTERM (hpo.interrupts.Terminated)
    try:
        for i, (argv, device) in enumerate(zip(argvs, devices, strict=True)):
            workers.append(_start(i, argv, device, env, logdir))
        while True:
            try:
                interrupts.raise_pending()  # a stop whose raise Python dropped: see there
                watch()
                alive = [w for w in workers if w.proc.poll() is None]
                if not alive:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    alive[-1].proc.wait(timeout=poll_s)  # a sleep that ends when the last exits
            except KeyboardInterrupt as stop:
                interrupts.taken()
                stops.append(stop)
                _signal_all(workers, signal.SIGINT if len(stops) == 1 else signal.SIGKILL)
    except BaseException:  # an error, or a stop while they were starting
        _abandon(workers)  # this process can no longer watch them: none may train on unseen
        raise
    results = [_result(w) for w in workers]
    if stops:
        raise stops[0]
    return results


def _start(
    index: int, argv: Sequence[str], device: str, env: Mapping[str, str], logdir: Path
) -> _Worker:
    # Files, not pipes: nobody has to drain them while the worker runs.
    out = open(logdir / f"worker-{index}.out", "w+b")  # noqa: SIM115 - closed in _result
    err = open(logdir / f"worker-{index}.err", "w+b")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            worker_command(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            process_group=0,
        )
    except BaseException:
        out.close()
        err.close()
        raise
    return _Worker(index, device, proc, out, err)


def signal_name(number: int) -> str:
    """SIGKILL for 9; real-time signals (SIGRTMIN+n) have no name in Python's enum."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_all(workers: Sequence[_Worker], sig: signal.Signals) -> None:
    for w in workers:
        if w.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(sig)


def _abandon(workers: Sequence[_Worker], grace_s: float = ABANDON_GRACE_S) -> None:
    """Stop the workers as Ctrl-C does (each queues its trial again), killing any still alive
    after ``grace_s``, and close their logs."""
    _signal_all(workers, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.out.close()
        w.err.close()


def _result(w: _Worker) -> WorkerResult:
    code = w.proc.wait()
    w.out.seek(0)
    w.err.seek(0)
    lines = w.out.read().decode(errors="replace").strip().splitlines()
    stderr = w.err.read().decode(errors="replace")
    w.out.close()
    w.err.close()
    outcome = _parse(lines[-1]) if lines else None
    if outcome is None:
        if code < 0:
            outcome = WorkerOutcome("error", "signal", f"was killed by {signal_name(-code)}")
        else:
            outcome = WorkerOutcome("error", "crash", f"exited with code {code}, reporting nothing")
    said = tuple(dict.fromkeys(_HPO_WARNING.findall(stderr)))  # each once, in order
    return WorkerResult(w.index, w.device, code, outcome, stderr[-TAIL:], said)


def _parse(line: str) -> WorkerOutcome | None:
    try:
        data = json.loads(line)
        status, kind, message = data["status"], data["kind"], str(data["message"])
    except (ValueError, KeyError, TypeError):
        return None
    if status not in get_args(Status) or kind not in get_args(Kind):  # not a worker's line
        return None
    return WorkerOutcome(status, kind, message)


def failure_message(
    results: Sequence[WorkerResult], grace_s: int, *, complete: bool = False
) -> str | None:
    """One message for all that went wrong, or None when every worker finished cleanly;
    ``complete``: the study reached its target all the same.

    A lost database stops every worker with much the same error: it is said once."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return None
    lines: list[str] = []
    lost = [r for r in bad if r.outcome.kind == "storage"]
    if lost:
        lines.append(f"{len(lost)} of {len(results)} workers stopped: {lost[0].outcome.message}")
    said: set[str] = set()
    for r in bad:
        if r.outcome.kind == "storage" or r.outcome.message in said:
            continue
        said.add(r.outcome.message)
        line = f"worker {r.index} ({r.device}) {r.outcome.message}"
        if r.outcome.kind == "signal" and complete:
            line += "; the others re-ran the trial it was running, and the study is complete"
        elif r.outcome.kind == "signal":
            line += (
                "; the trial it was running is failed and queued again (by the other workers or "
                f"the next run on this machine at once, elsewhere after {grace_s} s without a "
                "heartbeat). Rerun the same command to finish and finalize the study"
            )
        elif r.outcome.status == "interrupted":  # a signal to it alone, not to the run
            line += (
                "; its trial was queued again. Rerun the same command to finish and finalize the "
                "study"
            )
        elif r.outcome.kind == "crash" and r.stderr_tail.strip():
            line += "\n" + r.stderr_tail.rstrip()
        lines.append(line)
    return "\n".join(lines)


class StudyWatch:
    """The parent's view of the study for its display: finished trials and running epochs."""

    def __init__(self, study: optuna.Study, target: int, epochs: int, progress: Progress) -> None:
        self._study, self._target, self._epochs = study, target, epochs
        self._progress = progress
        self._seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def __call__(self) -> None:
        try:
            trials = self._study.get_trials(deepcopy=False)
        except Exception as exc:  # the workers say what went wrong with the storage
            if not storage_failure(exc):
                raise
            return
        direction, clock = self._study.direction, dt.datetime.now()
        new = [t for t in trials if t.state.is_finished() and t.number not in self._seen]
        for t in sorted(new, key=lambda t: t.datetime_complete or clock):
            self._seen.add(t.number)
            # The study as it stood when this trial ended, so the lines read in order.
            then = [u for u in trials if not _ended_after(u, t)]
            took = t.duration.total_seconds() if t.duration else None
            now = counts_of(then, self._target, direction)
            self._progress.trial_finished(t.number, outcome(t), now, seconds=took)
        self._progress.running(
            [
                Running(t.number, len(t.intermediate_values), self._epochs, _since(t, clock))
                for t in trials
                if t.state == TrialState.RUNNING
            ]
        )


def _ended_after(u: optuna.trial.FrozenTrial, t: optuna.trial.FrozenTrial) -> bool:
    if not u.state.is_finished() or u.number == t.number:
        return False
    return (u.datetime_complete, u.number) > (t.datetime_complete, t.number)


def _since(t: optuna.trial.FrozenTrial, clock: dt.datetime) -> float:
    return max(0.0, (clock - t.datetime_start).total_seconds()) if t.datetime_start else 0.0


# ---------------------------------------------------------------------- in the worker


def outcome_of(exc: BaseException | None) -> tuple[WorkerOutcome, int]:
    """The outcome line and the exit code for a worker that ended with ``exc`` (None: done)."""
    if exc is None:
        return WorkerOutcome("ok"), 0
    if isinstance(exc, KeyboardInterrupt):
        return WorkerOutcome("interrupted", "error", "was interrupted"), 130
    if isinstance(exc, StorageError):
        return WorkerOutcome("error", "storage", str(exc)), 1
    if isinstance(exc, HpoError):
        return WorkerOutcome("error", "error", f"stopped: {exc}"), 1
    return WorkerOutcome("error", "crash", f"crashed: {type(exc).__name__}: {exc}"), 1


def exit_with_parent() -> None:
    """Linux: have the kernel send this worker SIGINT if its parent dies (even by SIGKILL), so
    that no orphan trains on unseen; SIGINT fails and re-queues its trial as Ctrl-C does."""
    parent = os.getppid()
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGINT))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGINT)


def describe_plan(devices: Sequence[str], threads: int | None) -> str:
    per = f", {threads} thread(s) each" if threads is not None else ""
    spread: dict[str, int] = {}
    for d in devices:
        spread[d] = spread.get(d, 0) + 1
    where = ", ".join(f"{n} on {d}" for d, n in spread.items())
    return f"workers: {len(devices)} ({where}{per})"
