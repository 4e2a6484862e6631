"""What the ray backend's tests look for on this machine: Ray's processes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable

#: logical CPUs of the test Ray (executors reserve one each by default), and a custom
#: resource the placement tests ask for
RAY_CPUS = 8
SLOTS = 3
#: seconds a process that was told to end has to be gone
GONE_WITHIN = 30.0


def ray_processes(session_dir: str | None = None) -> list[psutil.Process]:
    """Ray's processes on this machine: its daemons and workers, and executors' actors
    (``ray::ExecutorActor``); with ``session_dir``, only that Ray's."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info["name"] or ""
        cmdline = " ".join(process.info["cmdline"] or ())
        ray_like = name.startswith("ray::") or name in ("raylet", "gcs_server") or "ray/" in cmdline
        if ray_like and (session_dir is None or session_dir in cmdline or name.startswith("ray::")):
            found.append(process)
    return found


def actor_processes() -> list[psutil.Process]:
    """The live processes of executors' actors (Ray titles them ``ray::ExecutorActor``)."""
    alive = []
    for process in psutil.process_iter(["name", "status"]):
        actor = (process.info["name"] or "").startswith("ray::ExecutorAc")
        if actor and process.info["status"] != psutil.STATUS_ZOMBIE:
            alive.append(process)
    return alive


def wait_for(check: Callable[[], list[psutil.Process]], within: float) -> list[psutil.Process]:
    """``check()`` until it finds nothing or ``within`` seconds pass; what it found last."""
    deadline = time.monotonic() + within
    while (found := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found
