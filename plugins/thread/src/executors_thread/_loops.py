"""What the host side of a thread executor needs of the host's event loop, looked up
once per executor rather than several times a job: its clock (also read in callbacks
that run outside any task, where ``anyio.current_time()`` cannot find the loop) and its
event class (``anyio.Event()`` looks the loop up at each creation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable


def on_asyncio() -> bool:
    """Whether the loop this is called on is asyncio's."""
    return sniffio.current_async_library() == "asyncio"


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


def event_class() -> Callable[[], anyio.Event]:
    """What makes ``anyio.Event()`` on this loop (anyio returns its loop's own subclass)."""
    return type(anyio.Event())
