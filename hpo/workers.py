"""``hpo run --jobs N``: N worker processes on this machine sharing one study, one display.

Each worker is ``hpo run`` itself (with the hidden ``--worker`` flag): the same loop as a single
run against the same storage (Optuna's distributed mode, nothing scheduled here), silent, on its
own device and share of the CPU threads. Workers live in their own process group, so a terminal's
Ctrl-C reaches the parent alone, which forwards it once; a worker killed outright leaves the
others running, its trial failed by the heartbeat and re-run by them. The parent draws the one
progress display from the storage (hpo.study_watch) and reports each distinct failure once
(hpo.worker_outcomes).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

import optuna

from hpo import interrupts
from hpo.device import WorkerPlan
from hpo.errors import HpoError
from hpo.progress import Progress
from hpo.storage_url import STORAGE_ENV
from hpo.study_summary import counts
from hpo.study_watch import StudyWatch
from hpo.worker_outcomes import (
    WorkerOutcome,
    WorkerResult,
    failure_message,
    hpo_warnings,
    parse_outcome,
    signal_name,
    worker_warnings,
)

POLL_S = 1.0  # how often the parent reads the study for its display
TAIL = 3000  # characters of a crashed worker's stderr shown
# How long workers stopped because the parent cannot watch them any more have to queue their
# trials again before they are killed.
ABANDON_GRACE_S = 30.0


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
    outcome = parse_outcome(lines[-1]) if lines else None
    if outcome is None:
        if code < 0:
            outcome = WorkerOutcome("error", "signal", f"was killed by {signal_name(-code)}")
        else:
            outcome = WorkerOutcome("error", "crash", f"exited with code {code}, reporting nothing")
    return WorkerResult(w.index, w.device, code, outcome, stderr[-TAIL:], hpo_warnings(stderr))


def describe_plan(devices: Sequence[str], threads: int | None) -> str:
    per = f", {threads} thread(s) each" if threads is not None else ""
    spread: dict[str, int] = {}
    for d in devices:
        spread[d] = spread.get(d, 0) + 1
    where = ", ".join(f"{n} on {d}" for d, n in spread.items())
    return f"workers: {len(devices)} ({where}{per})"


# ---------------------------------------------------------------------- in the worker


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
