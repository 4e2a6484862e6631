"""Entrypoints and setups for the oneshot backend's own tests. Each job's process imports
this module from the tests directory, which it finds on the host's sys.path."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext


def pid(ctx: JobContext) -> int:
    """The pid of the process the job runs in."""
    return os.getpid()


async def apid(ctx: JobContext) -> int:
    """:func:`pid`, async."""
    return os.getpid()


def setup_pid() -> int:
    """A setup whose state is the pid of the process it ran in."""
    return os.getpid()


def pid_and_state(ctx: JobContext) -> tuple[int, object]:
    return os.getpid(), ctx.state


def noisy(ctx: JobContext) -> object:
    """Write to stdout every way a job can, then return the payload."""
    print("a print that must not reach the reply")
    sys.stdout.write("x" * 100_000)
    sys.stdout.flush()
    os.write(1, b"\x00\x00\x00\x10written straight to file descriptor 1")
    print("and a last one", file=sys.__stdout__, flush=True)
    return ctx.payload


def kill_itself(ctx: JobContext) -> object:
    """With the payload "kill", end the process with SIGKILL; return any other payload."""
    if ctx.payload == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.payload


def returns_a_lambda(ctx: JobContext) -> object:
    return lambda: None


def reads_stdin(ctx: JobContext) -> str:
    """What the job reads on stdin: nothing (it reads from the null device)."""
    return sys.stdin.read()


def record_pid_then_hang(ctx: JobContext) -> object:
    """Write the process's pid to the file named by the payload, then wait up to 30 s
    without ever looking at cancel_requested: only a kill stops it sooner. With a None
    payload, return the pid at once."""
    if ctx.payload is None:
        return os.getpid()
    path = Path(str(ctx.payload))
    path.with_suffix(".tmp").write_text(str(os.getpid()))
    path.with_suffix(".tmp").replace(path)  # appears whole
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "not killed"
