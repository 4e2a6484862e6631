"""The running event loop's clock, as a function that can be called from anywhere on
that loop, callbacks included, and at the cost of one call (``anyio.current_time()``
looks the loop up each time, and cannot inside a callback that runs outside a task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable


def loop_clock() -> Callable[[], float]:
    """The clock of the loop this is called on: ``anyio.current_time()`` from then on,
    trio's virtual clock included."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time
