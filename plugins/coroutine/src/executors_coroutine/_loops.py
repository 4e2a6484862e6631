"""What a running job needs of the host's event loop, looked up once per executor rather
than once a job: ``anyio.CancelScope()`` and ``anyio.lowlevel.checkpoint()`` look the
loop up at each call, and a coroutine slot runs each job with one of each."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def cancel_scope_class() -> Callable[[], anyio.CancelScope]:
    """What makes ``anyio.CancelScope()`` on this loop. anyio returns an instance of its
    loop's own subclass: calling that class makes the same scope without the lookup
    (an anyio implementation detail; a new anyio that changes it costs speed only)."""
    return type(anyio.CancelScope())


def checkpoint_function() -> Callable[[], Awaitable[None]]:
    """``anyio.lowlevel.checkpoint`` for this loop, looked up once."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.checkpoint
    import asyncio

    return functools.partial(asyncio.sleep, 0)
