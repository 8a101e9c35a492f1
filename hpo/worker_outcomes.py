"""What a ``--jobs`` worker reports and how the parent words it: the outcome line a worker
prints last on its stdout, the result the parent makes of it (exit code, stderr), and one message
for every failure, each distinct one said once."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from hpo.errors import HpoError
from hpo.storage import StorageError

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


def parse_outcome(line: str) -> WorkerOutcome | None:
    """The outcome a worker's last stdout line reports; None for a line that is not one."""
    try:
        data = json.loads(line)
        status, kind, message = data["status"], data["kind"], str(data["message"])
    except (ValueError, KeyError, TypeError):
        return None
    if status not in get_args(Status) or kind not in get_args(Kind):  # not a worker's line
        return None
    return WorkerOutcome(status, kind, message)


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


def signal_name(number: int) -> str:
    """SIGKILL for 9; real-time signals (SIGRTMIN+n) have no name in Python's enum."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# A warning as Python prints it, from hpo's code: "/x/hpo/step_compile.py:90: RuntimeWarning: ..."
_HPO_WARNING = re.compile(r"^\S*[/\\]hpo[/\\]\S+:\d+: (\w*Warning): (.*)$", re.MULTILINE)


def hpo_warnings(stderr: str) -> tuple[tuple[str, str], ...]:
    """(kind, message) of each warning hpo gave in a worker's stderr, each once, in order."""
    return tuple(dict.fromkeys(_HPO_WARNING.findall(stderr)))


def worker_warnings(results: Sequence[WorkerResult]) -> list[str]:
    """Each distinct warning hpo gave in the workers (a compiled step that fell back to a slower
    one, say), once, with the workers that gave it: a worker's stderr is otherwise shown only
    when it fails."""
    said: dict[str, list[int]] = {}
    for r in results:
        for kind, message in r.warnings:
            said.setdefault(f"{kind}: {message}", []).append(r.index)
    return [f"worker(s) {', '.join(map(str, i))}: {text}" for text, i in said.items()]


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
