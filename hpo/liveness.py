"""Whether the process running a trial is still alive, where this process can tell.

A trial whose process was killed (SIGKILL, a crash, the OOM killer) stays RUNNING in the storage.
Across machines only its heartbeat can tell it is lost, after 3 heartbeat intervals; meanwhile a
run restarted at once drew new trials ahead of it, so its results no longer matched a run
straight through, and waited for it. On the same machine the process itself says: each trial
records who runs it (``this_process``), and ``is_gone`` finds that process ended.

"The same machine" is one kernel boot and one PID namespace (containers on one host share the
boot but not the namespace): only there does a PID name the same process. And the same user:
/proc may hide other users' processes (the hidepid mount option), which would read as ended. A
PID is reused after its process ends, so the process's start time (in clock ticks since boot) is
recorded too.
Where /proc cannot say (not Linux), nothing is recorded and heartbeats alone decide.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any


@functools.cache
def _machine() -> tuple[str, str, int] | None:
    """(host name, kernel boot id, PID namespace inode) of this process, or None where /proc
    lacks them or is another PID namespace's (a PID read there would name another process)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return socket.gethostname(), boot, os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _start_and_state(pid: int) -> tuple[int, str]:
    """A process's start time (clock ticks since boot) and state letter, from /proc/PID/stat;
    OSError where there is no such process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]), fields[0]  # fields 22 (starttime) and 3 (state) of proc(5)


def _no_such_process(pid: int) -> bool:
    """The kernel's word, where /proc would not say: a signal 0 reaches any live process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: there, another user's
        return False
    return False


def this_process() -> dict[str, Any] | None:
    """Who runs a trial, as its ``process`` user attribute records it; None where unknown."""
    machine = _machine()
    if machine is None:
        return None
    pid = os.getpid()
    try:
        started, _ = _start_and_state(pid)
    except (OSError, ValueError, IndexError):
        return None
    host, boot, pid_ns = machine
    return {"host": host, "pid": pid, "started": started, "boot": boot, "pid_ns": pid_ns,
            "uid": os.getuid()}  # fmt: skip


def is_gone(record: object) -> bool:
    """Whether ``record`` (a ``this_process`` value) names a process of this machine that has
    ended. False wherever that cannot be told: another machine or container, no record."""
    machine = _machine()
    if machine is None or not isinstance(record, dict):
        return False
    # The host too: every machine's first PID namespace has the same inode, and machines cloned
    # from one memory snapshot (microVMs) can share a boot id.
    mine = (*machine, os.getuid())
    if tuple(record.get(k) for k in ("host", "boot", "pid_ns", "uid")) != mine:
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    try:
        started, state = _start_and_state(pid)
    except PermissionError:
        return False  # there, but not ours to read
    except (OSError, ValueError, IndexError):
        return _no_such_process(pid)
    # Another process that was given the same PID since; or a dead one not yet reaped.
    return started != record.get("started") or state in ("Z", "X")
