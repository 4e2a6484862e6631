"""The job and setup functions of ``soak.py``. They live in a module of their own so
that worker processes import them by name (and the fork servers preload them).

A job's payload says what it does: a :class:`~executors.testing.jobs.Fault` (echo,
raise, sleep, hang, crash) is played by the testing kit's ``fault`` / ``afault``; a
:class:`Hold` allocates memory and holds it, so that the pool's supervisor sees the
worker over ``memory_limit_mb``.
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

import attrs

from executors.testing.jobs import BOUND, InjectedFault, afault, fault

if TYPE_CHECKING:
    from executors import JobContext

#: the fraction of setups that fail; read where the setup runs (workers inherit it)
SETUP_FAILURE_RATE = "SOAK_SETUP_FAILURE_RATE"
_POLL = 0.005


@attrs.frozen
class Hold:
    """Allocate ``mib`` MiB, touch every page, and hold it for ``seconds`` (stopping
    early once cancellation is requested); return the size in bytes."""

    mib: float
    seconds: float


def job(ctx: JobContext) -> object:
    """The soak's sync entrypoint."""
    spec = ctx.payload
    if isinstance(spec, Hold):
        block = _touch(spec.mib)
        deadline = time.monotonic() + min(spec.seconds, BOUND)
        while time.monotonic() < deadline and not ctx.cancel_requested:
            time.sleep(_POLL)
        return len(block)
    return fault(ctx)


async def ajob(ctx: JobContext) -> object:
    """The soak's async entrypoint (for backends that run only ``async def`` jobs)."""
    import anyio

    spec = ctx.payload
    if isinstance(spec, Hold):
        block = _touch(spec.mib)
        await anyio.sleep(min(spec.seconds, BOUND))
        return len(block)
    return await afault(ctx)


def setup() -> object:
    """Fails (raises :class:`InjectedFault`) on a random ``SOAK_SETUP_FAILURE_RATE`` of
    the starts."""
    rate = float(os.environ.get(SETUP_FAILURE_RATE, "0") or 0)
    if random.random() < rate:
        msg = "injected setup failure"
        raise InjectedFault(msg)
    return None


def _touch(mib: float) -> bytearray:
    block = bytearray(int(mib * 1024 * 1024))
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block
