"""Job functions for the benchmarks. They live in a module of their own so that
worker processes import them by name (and the fork servers preload them)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext


def noop(ctx: JobContext) -> object:
    """The pool's no-op job: return the payload."""
    return ctx.payload


def identity(value: object) -> object:
    """``ProcessPoolExecutor``'s no-op job: return the argument."""
    return value


async def anoop(ctx: JobContext) -> object:
    """The coroutine backend's no-op job: return the payload."""
    return ctx.payload


def sleeper(ctx: JobContext) -> object:
    """Sleeps for its payload's seconds: a job that keeps no CPU busy."""
    time.sleep(ctx.payload)
    return None


def echo(ctx: JobContext) -> object:
    """Returns its payload: a large payload's round trip."""
    return ctx.payload


def meet(arrival: tuple[str, int, int]) -> int:
    """``(directory, count, i)``: waits until ``count`` worker processes have called it
    (each leaves its pid in ``directory``), then returns ``i``. Calls made at once then
    each start a worker of a lazily starting pool: none can finish, and free its worker
    for the next, before all have started."""
    directory, count, i = arrival
    open(os.path.join(directory, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 30.0
    while len(os.listdir(directory)) < count:
        if time.monotonic() > deadline:
            msg = f"only {len(os.listdir(directory))} of {count} workers came"
            raise TimeoutError(msg)
        time.sleep(0.0001)
    return i
