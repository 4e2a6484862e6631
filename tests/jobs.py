"""Entrypoints and setups the tests refer to as "tests.jobs:<name>"."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
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
