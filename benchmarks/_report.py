"""Timing loops the harness (``bench.py``) shares between its sides.

Imported by name (``from _report import ...``): run as ``python benchmarks/bench.py``,
the script's own directory is on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import psutil

#: one call of a side: runs the no-op job on ``i`` and returns its value
Call = Callable[[int], Awaitable[object]]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def round_trips(call: Call, payloads: range) -> list[float]:
    """Seconds each call took, one call after another."""
    samples = []
    for i in payloads:
        start = time.perf_counter()
        value = await call(i)
        samples.append(time.perf_counter() - start)
        assert value == i
    return samples


async def in_flight(call: Call, payloads: range, lanes: int) -> float:
    """``lanes`` tasks, each calling one after another until the payloads run out;
    returns seconds."""
    remaining = iter(payloads)

    async def lane() -> None:
        for i in remaining:
            assert await call(i) == i

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(lanes):
            tg.start_soon(lane)
    return time.perf_counter() - start


@contextlib.contextmanager
def highest_rss(every: float) -> Iterator[Callable[[], int]]:
    """This process's RSS sampled every ``every`` seconds by a thread while the block
    runs: call what it yields for the highest reading so far (the RSS at entry
    included)."""
    process = psutil.Process()
    highest = process.memory_info().rss
    stop = threading.Event()

    def watch() -> None:
        nonlocal highest
        while not stop.wait(every):
            highest = max(highest, process.memory_info().rss)

    watcher = threading.Thread(target=watch, name="bench-rss")
    watcher.start()
    try:
        yield lambda: highest
    finally:
        stop.set()
        watcher.join()
