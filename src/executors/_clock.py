"""What the hot paths need of the running event loop, looked up once: its clock (callable
from anywhere on the loop, callbacks included: ``anyio.current_time()`` looks the loop up
each time, and cannot inside a callback that runs outside a task), anyio's cancel scope
and event classes for it (``anyio.CancelScope()`` and ``anyio.Event()`` look the loop up
at each creation, twice a job), and its checkpoint."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def loop_clock() -> Callable[[], float]:
    """The clock of the loop this is called on: ``anyio.current_time()`` from then on,
    trio's virtual clock included."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    if type(loop).time is asyncio.BaseEventLoop.time:
        # what that method returns, without its Python frame (read several times a job)
        return time.monotonic
    return loop.time


def cancel_scope_class() -> Callable[[], anyio.CancelScope]:
    """The class ``anyio.CancelScope()`` makes on this loop: calling it makes the same
    scope without the lookup."""
    return type(anyio.CancelScope())


def event_class() -> Callable[[], anyio.Event]:
    """The class ``anyio.Event()`` makes on this loop."""
    return type(anyio.Event())


def on_asyncio() -> bool:
    """Whether the loop this is called on is asyncio's."""
    return sniffio.current_async_library() == "asyncio"


def checkpoint_function() -> Callable[[], Awaitable[None]]:
    """``anyio.lowlevel.checkpoint`` for this loop, looked up once."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.checkpoint
    import asyncio

    return functools.partial(asyncio.sleep, 0)
