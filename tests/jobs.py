"""Entrypoints and setups the tests refer to as "tests.jobs:<name>"."""

from __future__ import annotations

import itertools
import os
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator

    from executors import JobContext


def make_state() -> dict[str, str]:
    return {"model": "loaded"}


def state_of(ctx: JobContext) -> object:
    return ctx.state


async def astate_of(ctx: JobContext) -> object:
    return ctx.state


NOT_CALLABLE = 42


def _mark_started(ctx: JobContext) -> float:
    """Write this job's process id to ``<payload["dir"]>/<job id>`` (so that a test knows
    the job runs, and where) and return how long the job should sleep."""
    payload = ctx.payload
    assert isinstance(payload, dict)
    marker = Path(payload["dir"], ctx.job_id)
    partial = marker.with_suffix(".partial")
    partial.write_text(str(os.getpid()))
    partial.replace(marker)  # a test never reads a half-written marker
    return float(payload["seconds"])


def sleep_marked(ctx: JobContext) -> str:
    """Mark the start, then sleep ``payload["seconds"]``, stopping early when cancelled."""
    deadline = time.monotonic() + _mark_started(ctx)
    while time.monotonic() < deadline and not ctx.cancel_requested:
        time.sleep(0.05)
    return "cancelled" if ctx.cancel_requested else "slept"


async def asleep_marked(ctx: JobContext) -> str:
    """:func:`sleep_marked` for backends that run ``async def`` entrypoints."""
    await anyio.sleep(_mark_started(ctx))
    return "slept"


# -- plain functions for pool.call, pool.map and PoolExecutor ---------------------------------

# per thread: every executor of the thread backend is a thread of one process
_local = __import__("threading").local()
_thread_numbers = __import__("itertools").count(1)


def add(a: int, b: int = 0) -> int:
    return a + b


def add_later(a: int, b: int = 0) -> Awaitable[int]:
    """A plain function that returns an awaitable (as a ``functools.partial`` of an
    ``async def`` does): calls await what it returns, chunked or not."""
    return _added(a, b)


async def _added(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


def fail_with(text: str) -> object:
    raise ValueError(text)


def where() -> tuple[int, int]:
    """The process and the thread a call ran in (a number given to each thread as it
    first calls this: a thread's own ident is reused once it ends)."""
    if not hasattr(_local, "number"):
        _local.number = next(_thread_numbers)
    return os.getpid(), _local.number


def initialize(value: object) -> None:
    """An initializer: what ``initialized()`` then returns in this worker."""
    _local.initialized = [*getattr(_local, "initialized", []), value]


def initialized() -> list[object]:
    """What ``initialize`` was given in this worker (process, or thread)."""
    return list(getattr(_local, "initialized", []))


def call_state() -> object:
    from executors.calls import current_job

    return current_job().state


async def wait_marked(marker: str, seconds: float) -> str:
    """Write ``marker``, then wait up to ``seconds`` (stopping early when the pool asks),
    in any host: an async function, run on every backend."""
    from executors.calls import current_job

    Path(marker).write_text(str(os.getpid()))  # noqa: ASYNC240 -- a few bytes, once
    job = current_job()
    deadline = time.monotonic() + seconds
    # Polled: a sync backend's cancel request is a flag, with no event to wait on.
    while time.monotonic() < deadline and not job.cancel_requested:  # noqa: ASYNC110
        await anyio.sleep(0.02)
    return "cancelled" if job.cancel_requested else "waited"


def exit_now() -> None:
    """Ends the process at once: a worker that crashes mid-call."""
    os._exit(3)


class Item:
    """A map item that a test can hold a weak reference to."""

    def __init__(self, value: int) -> None:
        self.value = value


def value_of(item: Item) -> int:
    return item.value


class Endless:
    """0, 1, 2... without end, counting how many were read (``read``): a map that
    materialised its input would never return."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            self.read += 1
            yield i


class WatchedItems:
    """``count`` items made as they are read, each followed by a weak reference: which
    of them are still alive tells whether something kept them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.refs: list[weakref.ref[Item]] = []

    def __iter__(self) -> Iterator[Item]:
        for i in range(self.count):
            item = Item(i)
            self.refs.append(weakref.ref(item))
            yield item

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.refs)


def hold_memory(mib: int, seconds: float) -> str:
    """Hold ``mib`` MiB (every page touched) for up to ``seconds``, or until the pool asks
    the call to stop."""
    from executors.calls import current_job

    held = bytearray(mib * 2**20)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    job = current_job()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not job.cancel_requested:
        time.sleep(0.02)
    return f"held {len(held) // 2**20} MiB"


def echo_timeout(timeout: float | None = None) -> float | None:
    """A function with a ``timeout`` keyword of its own."""
    return timeout
