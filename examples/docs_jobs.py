"""Entrypoints and setups that the examples in README.md and docs/ refer to as
``"examples.docs_jobs:<name>"``. ``tests/test_docs.py`` runs those examples."""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from executors import JobContext


async def double(ctx: JobContext) -> int:
    """Return twice the payload, after a short wait that stands for I/O."""
    await anyio.sleep(0.01)
    return int(ctx.payload) * 2


async def parse_int(ctx: JobContext) -> int:
    """Return the payload as an integer; raises ``ValueError`` for anything else."""
    return int(ctx.payload)


async def sleep_for(ctx: JobContext) -> float:
    """Sleep for the payload in seconds, then return it."""
    seconds = float(ctx.payload)
    await anyio.sleep(seconds)
    return seconds


def load_prices() -> dict[str, float]:
    """A setup: load something expensive once; jobs find it in ``ctx.state``."""
    return {"apple": 0.5, "pear": 0.75}


async def price_of(ctx: JobContext) -> float | None:
    """Look the payload up in what :func:`load_prices` returned."""
    prices: dict[str, float] = ctx.state
    return prices.get(str(ctx.payload))


def missing_model() -> None:
    """A setup that always fails, as a setup does when its model file is missing."""
    msg = "model file models/classifier.bin not found"
    raise FileNotFoundError(msg)


def checksum(ctx: JobContext) -> int:
    """A sync entrypoint (for thread-based backends): CRC-32 of the payload's bytes."""
    data: bytes = ctx.payload
    return zlib.crc32(data)


def busy_wait(ctx: JobContext) -> str:
    """A sync job that runs until the pool asks it to stop, polling ``cancel_requested``
    as long-running sync jobs should."""
    while not ctx.cancel_requested:
        time.sleep(0.005)
    return "stopped early"
