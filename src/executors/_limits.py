"""The limits of the host, for error messages: a backend whose worker process or
thread cannot be started says which limit was probably reached."""

from __future__ import annotations

import contextlib
import errno
import os
import sys


def os_problem(exc: OSError) -> str:
    """An OSError met while starting a worker, with the limit it means when there is
    one: ``[Errno 24] Too many open files: the host reached its open-files limit
    (RLIMIT_NOFILE = 6)``."""
    text = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
    if sys.platform == "win32":
        return text
    import resource

    if exc.errno == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return f"{text}: the host reached its open-files limit (RLIMIT_NOFILE = {soft})"
    if exc.errno == errno.ENFILE:
        return f"{text}: the system-wide open-files table is full"
    if exc.errno == errno.EAGAIN:
        return f"{text}: no new process or thread ({task_limits()}, or memory is short)"
    return text


def task_limits() -> str:
    """``RLIMIT_NPROC = 4096``, followed where this process's control group caps its
    tasks by ``, cgroup pids.max = 64 (64 in use)``. Both count threads as well as
    processes."""
    if sys.platform == "win32":
        return "no task limit known"
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    text = "RLIMIT_NPROC = " + ("unlimited" if soft == resource.RLIM_INFINITY else str(soft))
    cgroup = _cgroup_pids_limit()
    return f"{text}, {cgroup}" if cgroup else text


def own_pids_cgroup() -> str | None:
    """The directory of this process's control group in a hierarchy with the pids
    controller (cgroup v1's ``pids``, else v2), or None."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/cgroup") as file:
        for line in file.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                return f"/sys/fs/cgroup/pids{path}"
            if controllers == "" and os.path.exists(f"/sys/fs/cgroup{path}/pids.max"):
                return f"/sys/fs/cgroup{path}"
    return None


def _cgroup_pids_limit() -> str | None:
    """'cgroup pids.max = 12 (12 in use)' when this process's control group caps its
    tasks, else None; any error means None: this only adds to a message."""
    directory = own_pids_cgroup()
    if directory is None:
        return None
    try:
        with open(f"{directory}/pids.max") as file:
            maximum = file.read().strip()
        with open(f"{directory}/pids.current") as file:
            current = file.read().strip()
    except OSError:
        return None
    return None if maximum == "max" else f"cgroup pids.max = {maximum} ({current} in use)"
