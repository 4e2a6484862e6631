"""Warm round trip and throughput of the thread backend, against
``concurrent.futures.ThreadPoolExecutor`` and ``anyio.to_thread.run_sync``.

Run: ``.venv/bin/python benchmarks/bench_thread.py [--jobs N] [--quick] [--json PATH]``.

Every side runs a no-op *sync* function on 2 threads, in the same process and the same
run, on an asyncio host (``asyncio.wrap_future`` needs one): the pool with 2 executors,
a ``ThreadPoolExecutor(2)`` called from a plain loop (``submit().result()``, which blocks
the event loop) and awaited through ``asyncio.wrap_future``, and ``anyio.to_thread``
(its default limiter for round trips, a limiter of 2 for throughput). Each measurement
alternates between the sides in blocks, so that a machine that gets busier or quieter
during the run treats them alike. The figures that matter are the ratios, not the
absolute times. The run checks that it leaves no thread or descriptor behind
(``executors.testing.no_leaks``).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs
from _report import (
    Call,
    Row,
    Settings,
    blocks_of,
    in_flight,
    parse_options,
    percentile,
    report,
    round_trips,
)
from bench_jobs import identity

from executors import PoolConfig, open_pool
from executors.testing import no_leaks

if TYPE_CHECKING:
    from executors import Pool

THREADS = 2
IN_FLIGHT = 64
OURS = "thread pool"
#: the one anchor of the throughput test that is not run by IN_FLIGHT tasks
MAP = "ThreadPoolExecutor map()"


def pool_config() -> PoolConfig:
    return PoolConfig(
        backend="thread",
        entrypoint="bench_jobs:noop",
        idle_executors=THREADS,
        max_executors=THREADS,
    )


@attrs.define(eq=False)
class Sides:
    """The pool and its anchors, each as an async call of ``identity(i)`` on a thread."""

    pool: Pool
    executor: ThreadPoolExecutor
    limiter: anyio.CapacityLimiter

    def round_trip_calls(self) -> dict[str, Call]:
        return {
            OURS: self.pool.run,
            "to_thread.run_sync": self.to_thread,
            "ThreadPoolExecutor submit().result()": self.blocking,
            "ThreadPoolExecutor wrap_future": self.wrapped,
        }

    def in_flight_calls(self) -> dict[str, Call]:
        return {
            OURS: self.pool.run,
            "to_thread.run_sync": self.to_thread_limited,
            "ThreadPoolExecutor wrap_future": self.wrapped,
        }

    async def to_thread(self, i: int) -> object:
        return await anyio.to_thread.run_sync(identity, i)

    async def to_thread_limited(self, i: int) -> object:
        return await anyio.to_thread.run_sync(identity, i, limiter=self.limiter)

    async def blocking(self, i: int) -> object:
        # No checkpoint: a plain loop of submit().result(), the way sync code calls it.
        return self.executor.submit(identity, i).result()

    async def wrapped(self, i: int) -> object:
        return await asyncio.wrap_future(self.executor.submit(identity, i))


def anchor_map(executor: ThreadPoolExecutor, payloads: range) -> float:
    start = time.perf_counter()
    values = list(executor.map(identity, payloads))
    elapsed = time.perf_counter() - start
    assert values == list(payloads)
    return elapsed


async def round_trip_rows(sides: Sides, settings: Settings) -> list[Row]:
    calls = sides.round_trip_calls()
    for call in calls.values():
        await round_trips(call, range(settings.warmup))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for payloads in blocks_of(settings):
        for name, call in calls.items():
            gc.collect()
            samples[name] += await round_trips(call, payloads)
    ours = samples.pop(OURS)
    return [
        Row(
            f"round trip {name} (us), anchor {anchor}",
            "us",
            percentile(ours, q) * 1e6,
            percentile(anchor_samples, q) * 1e6,
        )
        for name, q in (("p50", 0.5), ("p99", 0.99))
        for anchor, anchor_samples in samples.items()
    ]


async def throughput_rows(sides: Sides, settings: Settings) -> list[Row]:
    calls = sides.in_flight_calls()
    seconds = dict.fromkeys([*calls, MAP], 0.0)
    for payloads in blocks_of(settings):
        for name, call in calls.items():
            gc.collect()
            seconds[name] += await in_flight(call, payloads, IN_FLIGHT)
        gc.collect()
        seconds[MAP] += anchor_map(sides.executor, payloads)
    jobs = sum(len(payloads) for payloads in blocks_of(settings))
    ours = jobs / seconds.pop(OURS)
    return [
        Row(f"throughput (jobs/s), anchor {name}", "jobs/s", ours, jobs / elapsed)
        for name, elapsed in seconds.items()
    ]


async def measure(settings: Settings) -> list[Row]:
    with ThreadPoolExecutor(THREADS) as executor:
        async with open_pool(pool_config()) as pool:
            await pool.wait_until(lambda s: s.idle >= THREADS)
            sides = Sides(pool, executor, anyio.CapacityLimiter(THREADS))
            rows = await round_trip_rows(sides, settings)
            rows += await throughput_rows(sides, settings)
    return rows


def join_anyio_workers(before: set[threading.Thread]) -> None:
    """anyio's worker threads are told to stop when their event loop ends, but nothing
    waits for them; wait here, so that the leak check sees them gone."""
    for thread in threading.enumerate():
        if thread not in before and thread.name == "AnyIO worker thread":
            thread.join(timeout=5.0)


def main() -> None:
    options = parse_options(__doc__, quick="200 jobs: a smoke test")
    settings = Settings.from_options(options)
    with no_leaks():
        before = set(threading.enumerate())
        try:
            rows = anyio.run(measure, settings, backend="asyncio")
        finally:
            join_anyio_workers(before)
    report(
        rows, options, settings, ours=OURS, anchor="anchor", threads=THREADS, in_flight=IN_FLIGHT
    )


if __name__ == "__main__":
    main()
