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

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs
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

#: one call of a side: runs ``identity(i)`` on a thread and returns its value
Call = Callable[[int], Awaitable[object]]


@attrs.frozen
class Settings:
    #: round trips timed per side, and jobs per side in each throughput test
    jobs: int
    warmup: int
    #: each test alternates between the sides this many times
    blocks: int


@attrs.frozen
class Row:
    """One line of the table: the same measurement of the pool and of one anchor."""

    label: str
    unit: str
    ours: float
    anchor: float

    @property
    def ratio(self) -> float:
        return self.ours / self.anchor


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pool_config() -> PoolConfig:
    return PoolConfig(
        backend="thread",
        entrypoint="bench_jobs:noop",
        idle_executors=THREADS,
        max_executors=THREADS,
    )


def blocks_of(settings: Settings) -> list[range]:
    size = max(1, settings.jobs // settings.blocks)
    return [range(start, start + size) for start in range(0, size * settings.blocks, size)]


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


async def round_trips(call: Call, payloads: range) -> list[float]:
    samples = []
    for i in payloads:
        start = time.perf_counter()
        value = await call(i)
        samples.append(time.perf_counter() - start)
        assert value == i
    return samples


async def in_flight(call: Call, payloads: range) -> float:
    """``IN_FLIGHT`` tasks, each calling one after another; returns seconds."""
    remaining = iter(payloads)

    async def lane() -> None:
        for i in remaining:
            assert await call(i) == i

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(IN_FLIGHT):
            tg.start_soon(lane)
    return time.perf_counter() - start


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
            seconds[name] += await in_flight(call, payloads)
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


def print_table(rows: list[Row]) -> None:
    width = max(len(row.label) for row in rows) + 2
    print(f"{'':{width}}{OURS:>14}{'anchor':>14}{'ratio':>8}")
    for row in rows:
        digits = 0 if row.unit == "jobs/s" else 1
        print(
            f"{row.label:{width}}{row.ours:14.{digits}f}{row.anchor:14.{digits}f}{row.ratio:8.2f}"
        )


def write_json(path: Path, settings: Settings, rows: list[Row]) -> None:
    document = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {**attrs.asdict(settings), "threads": THREADS, "in_flight": IN_FLIGHT},
        "rows": [{**attrs.asdict(row), "ratio": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def join_anyio_workers(before: set[threading.Thread]) -> None:
    """anyio's worker threads are told to stop when their event loop ends, but nothing
    waits for them; wait here, so that the leak check sees them gone."""
    for thread in threading.enumerate():
        if thread not in before and thread.name == "AnyIO worker thread":
            thread.join(timeout=5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="round trips and jobs per test")
    parser.add_argument("--quick", action="store_true", help="200 jobs: a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        settings = Settings(jobs=min(args.jobs, 200), warmup=20, blocks=2)
    else:
        settings = Settings(jobs=args.jobs, warmup=max(100, args.jobs // 10), blocks=5)
    with no_leaks():
        before = set(threading.enumerate())
        try:
            rows = anyio.run(measure, settings, backend="asyncio")
        finally:
            join_anyio_workers(before)
    print_table(rows)
    if args.json is not None:
        write_json(args.json, settings, rows)


if __name__ == "__main__":
    main()
