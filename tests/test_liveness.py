"""hpo.liveness: a trial's process on this machine, alive or gone, told from /proc."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hpo.liveness import is_gone, this_process

pytestmark = pytest.mark.skipif(
    not Path("/proc/sys/kernel/random/boot_id").exists(), reason="needs Linux's /proc"
)

RECORD = "import json; from hpo.liveness import this_process; print(json.dumps(this_process()))"


def child_record(*, reap: bool) -> tuple[dict[str, Any], subprocess.Popen[str]]:
    """The record a process that has since ended made of itself; reaped or left a zombie."""
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD], stdout=subprocess.PIPE, text=True, cwd=repo
    )
    assert proc.stdout is not None
    record = json.loads(proc.stdout.readline())
    if reap:
        proc.wait(timeout=30)
    else:  # exited, not waited for: a zombie until reaped
        while not _exited(record["pid"]):
            time.sleep(0.01)
    return record, proc


def _exited(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_this_process_is_alive_and_a_process_that_ended_is_gone() -> None:
    me = this_process()
    assert me is not None and not is_gone(me)
    ended, _ = child_record(reap=True)
    assert ended["pid"] != me["pid"] and is_gone(ended)


def test_an_ended_process_not_yet_reaped_is_gone() -> None:
    zombie, proc = child_record(reap=False)
    try:
        assert Path(f"/proc/{zombie['pid']}").exists() and is_gone(zombie)
    finally:
        proc.wait(timeout=30)


def test_a_pid_given_to_another_process_since_is_gone() -> None:
    me = this_process()
    assert me is not None
    assert is_gone({**me, "started": me["started"] - 1})  # the PID's earlier owner


def test_another_machine_or_container_or_no_record_is_never_called_gone() -> None:
    ended, _ = child_record(reap=True)
    assert not is_gone({**ended, "boot": "another-machine"})
    assert not is_gone({**ended, "host": "a-clone-of-this-machine"})
    assert not is_gone({**ended, "pid_ns": ended["pid_ns"] + 1})  # another container's PIDs
    assert not is_gone({**ended, "uid": ended["uid"] + 1})  # /proc may hide another user's
    for record in (None, {}, "x", {**ended, "pid": "12"}, {**ended, "pid": True}):
        assert not is_gone(record)
