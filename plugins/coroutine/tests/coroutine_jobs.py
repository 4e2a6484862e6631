"""Entrypoints and setups for the coroutine backend tests."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from executors import JobContext

SETUP_CALLS: list[int] = []


def counting_setup() -> dict[str, int]:
    SETUP_CALLS.append(1)
    return {"calls": len(SETUP_CALLS)}


async def broken_setup() -> None:
    raise OSError("model weights not found at /models/x.bin")


async def state(ctx: JobContext) -> object:
    return ctx.state


async def sometimes_raise(ctx: JobContext) -> object:
    await anyio.lowlevel.checkpoint()
    if ctx.payload == "raise":
        raise ValueError(f"bad payload in {ctx.job_id}")
    return ctx.payload


async def wait_for_release(ctx: JobContext) -> object:
    """Blocks until the event in the payload is set."""
    event: anyio.Event = ctx.payload
    await event.wait()
    return "released"


def sync_job(ctx: JobContext) -> object:
    return ctx.payload


async def block_the_loop(ctx: JobContext) -> object:
    """Blocks the host loop for ``ctx.payload`` seconds: the fault the watchdog reports."""
    time.sleep(ctx.payload)  # noqa: ASYNC251 -- blocking the loop is the point
    return ctx.job_id


async def signal_then_wait(ctx: JobContext) -> object:
    """Sets the first event of the payload once running, then waits for the second."""
    started, release = ctx.payload
    started.set()
    await release.wait()
    return "released"


async def swallow_cancellation(ctx: JobContext) -> object:
    """Sets the first event of the payload once running, waits for the second, and
    returns instead of raising when it is cancelled meanwhile."""
    started, release = ctx.payload
    started.set()
    try:
        await release.wait()
    except BaseException:  # swallowing the cancellation is the point
        return "swallowed"
    return "released"
