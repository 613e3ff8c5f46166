"""Whether the process that owns some work (a training run, a registration, a collection batch) still
runs: work left by a crash (`kill -9`, a full disk, a lost machine) is told apart from work in
progress elsewhere. The owner is recorded as `host/pidns:pid:start`; on the same host the process
table decides, elsewhere the time since the last sign of life."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def _host() -> str:
    """This machine as seen by a process: the host name and the pid namespace (containers sharing a
    host name, e.g. with host networking, still have their own pids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), "Z" for a zombie,
    None when it does not exist; "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ""
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return "Z" if fields[0] == "Z" else fields[19]


def process_id(pid: int | None = None) -> str:
    """`host:pid:start` of a process (this one by default): the start time tells a reused pid apart."""
    pid = pid or os.getpid()
    return f"{_host()}:{pid}:{_start_ticks(pid) or ''}"


def _process_alive(pid: int, start: str) -> bool:
    ticks = _start_ticks(pid)
    if ticks == "":  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return ticks is not None and ticks != "Z" and (not start or ticks == start)


def abandonment(owner: str | None, last_sign_ms: float | None, max_age: float,
                now: float | None = None) -> str | None:
    """Why the work of `owner` is abandoned, or None while it may still be in progress. On this host the
    process table decides (its owner no longer runs); elsewhere, no heartbeat for over `max_age` seconds."""
    host, pid, start = (owner or "").rsplit(":", 2) if (owner or "").count(":") >= 2 else ("", "", "")
    if host == _host() and pid.isdigit():
        return None if _process_alive(int(pid), start) else f"its process {owner} is gone"
    if last_sign_ms is None:
        return None
    idle = (now if now is not None else time.time()) - float(last_sign_ms) / 1000
    return f"no heartbeat for {idle:.0f}s (over {max_age:.0f}s)" if idle > max_age else None
