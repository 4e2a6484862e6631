"""Job and setup functions usable as entrypoints on any backend (importable inside
workers), including fault-injecting ones for the conformance suite.

Each job reads its parameter from the payload. Sync jobs that run long poll
:attr:`~executors.JobContext.cancel_requested`, except the ones whose point is to
ignore it; every one of those is bounded, so a test that fails still ends.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors._job import JobContext

#: the longest any fault-injecting job or setup runs, in seconds, whatever it ignores
BOUND = 30.0
_POLL = 0.005


class InjectedFault(RuntimeError):
    """What the raising jobs and setups raise."""


def echo(ctx: JobContext) -> object:
    """Return the payload."""
    return ctx.payload


async def aecho(ctx: JobContext) -> object:
    """Return the payload (async)."""
    return ctx.payload


async def scripted(ctx: JobContext) -> object:
    """Follow a :class:`~executors.testing.Script` payload on any async backend:
    wait ``seconds``, then return ``value``, raise, or hang until cancelled. A ``crash``
    script raises too: only a backend can really crash."""
    import anyio

    from ._simulated import Script, SimulatedError

    script = ctx.payload
    if not isinstance(script, Script):
        return script
    await anyio.sleep(script.seconds)
    if script.action == "hang":
        await anyio.sleep_forever()
    if script.action != "succeed":
        raise SimulatedError(script.message)
    return script.value


def scripted_sync(ctx: JobContext) -> object:
    """:func:`scripted` for backends that run only sync entrypoints: waits and hangs
    poll ``cancel_requested`` (a hang returns once cancellation is requested, or after
    :data:`BOUND` seconds)."""
    from ._simulated import Script, SimulatedError

    script = ctx.payload
    if not isinstance(script, Script):
        return script
    _wait(ctx, script.seconds)
    if script.action == "hang":
        _wait(ctx, BOUND)
        return None
    if script.action != "succeed":
        raise SimulatedError(script.message)
    return script.value


def _wait(ctx: JobContext, seconds: float) -> None:
    deadline = time.monotonic() + min(seconds, BOUND)
    while time.monotonic() < deadline and not ctx.cancel_requested:
        time.sleep(_POLL)


def sleep(ctx: JobContext) -> float:
    """Sleep ``payload`` seconds (stopping early once cancellation is requested); return
    the payload."""
    _wait(ctx, float(ctx.payload))
    return float(ctx.payload)


async def asleep(ctx: JobContext) -> float:
    """Sleep ``payload`` seconds (async, cancellable); return the payload."""
    import anyio

    await anyio.sleep(float(ctx.payload))
    return float(ctx.payload)


def raise_error(ctx: JobContext) -> object:
    """Raise :class:`InjectedFault` with the payload as its message."""
    raise InjectedFault(str(ctx.payload))


async def araise_error(ctx: JobContext) -> object:
    """Raise :class:`InjectedFault` with the payload as its message (async)."""
    raise InjectedFault(str(ctx.payload))


def crash(ctx: JobContext) -> object:
    """With an ``int`` payload, end the process at once with that exit status (no
    cleanup, no exception); return any other payload. Only crash a backend that isolates
    crashes."""
    if isinstance(ctx.payload, int):
        os._exit(ctx.payload)
    return ctx.payload


async def acrash(ctx: JobContext) -> object:
    """:func:`crash`, async."""
    return crash(ctx)


def hang_ignoring_cancel(ctx: JobContext) -> object:
    """With a ``float`` payload, wait that many seconds (at most :data:`BOUND`) without
    ever looking at ``cancel_requested``: only a kill stops it sooner. Return any other
    payload at once."""
    if not isinstance(ctx.payload, float):
        return ctx.payload
    seconds = min(ctx.payload, BOUND)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(_POLL)
    return "not killed"


async def ahang(ctx: JobContext) -> object:
    """With a ``float`` payload, wait that many seconds (at most :data:`BOUND`) without
    checking anything: only cancelling its task stops it. Return any other payload."""
    import anyio

    if not isinstance(ctx.payload, float):
        return ctx.payload
    await anyio.sleep(min(ctx.payload, BOUND))
    return "not killed"


async def block_loop(ctx: JobContext) -> float:
    """An async job that blocks its event loop for ``payload`` seconds (at most
    :data:`BOUND`) with ``time.sleep``."""
    seconds = min(float(ctx.payload), BOUND)
    time.sleep(seconds)  # noqa: ASYNC251 -- blocking the loop is the fault injected
    return seconds


def allocate(ctx: JobContext) -> int:
    """Allocate ``payload`` MiB, touch every page, hold it for ``metadata["hold"]``
    seconds (default 0), and return the size in bytes."""
    size = int(float(ctx.payload) * 1024 * 1024)
    block = bytearray(size)
    for i in range(0, size, 4096):
        block[i] = 1
    _wait(ctx, float(ctx.metadata.get("hold", 0)))
    return len(block)


async def aallocate(ctx: JobContext) -> int:
    """:func:`allocate`, async (the hold is cancellable)."""
    import anyio

    size = int(float(ctx.payload) * 1024 * 1024)
    block = bytearray(size)
    for i in range(0, size, 4096):
        block[i] = 1
    await anyio.sleep(float(ctx.metadata.get("hold", 0)))
    return len(block)


def count_runs(ctx: JobContext) -> int:
    """Append a line to the file named by the payload, then sleep
    ``metadata["seconds"]`` (default 0, cancellable): each line is one run of the job.
    Returns how many lines the file has."""
    return _count(str(ctx.payload), ctx.job_id, lambda: _wait(ctx, _seconds(ctx)))


async def acount_runs(ctx: JobContext) -> int:
    """:func:`count_runs`, async."""
    import anyio

    # Plain blocking I/O of a few bytes: a worker thread (anyio.Path) could outlive the
    # loop and count as a leak.
    with open(str(ctx.payload), "a") as file:  # noqa: ASYNC230
        file.write(f"{ctx.job_id}\n")
    await anyio.sleep(_seconds(ctx))
    with open(str(ctx.payload)) as file:  # noqa: ASYNC230
        return len(file.readlines())


def _seconds(ctx: JobContext) -> float:
    return min(float(ctx.metadata.get("seconds", 0)), BOUND)


def _count(path: str, job_id: str, then: object) -> int:
    with open(path, "a") as file:
        file.write(f"{job_id}\n")
    if callable(then):
        then()
    with open(path) as file:
        return len(file.readlines())


def setup_raises() -> object:
    """A setup function that raises :class:`InjectedFault`."""
    msg = "injected setup failure"
    raise InjectedFault(msg)


async def asetup_raises() -> object:
    """:func:`setup_raises`, async."""
    msg = "injected setup failure"
    raise InjectedFault(msg)


def setup_hangs() -> object:
    """A setup function that sleeps 5 s (bounded so that a test which waits for it still
    ends): longer than any ``initialize_timeout`` a test sets."""
    time.sleep(5.0)
    return None


async def asetup_hangs() -> object:
    """A setup that waits forever (cancellable)."""
    import anyio

    await anyio.sleep_forever()
    return None
