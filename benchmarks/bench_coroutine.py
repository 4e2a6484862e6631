"""Warm round trip and throughput of the coroutine backend, against bare tasks.

Run: ``.venv/bin/python benchmarks/bench_coroutine.py [--jobs N] [--host asyncio|trio]``.
Both sides run in the same process and the same run; the figures that matter are the
ratios, not the absolute times (machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING

import anyio
from _report import percentile

from executors import PoolConfig, open_pool

if TYPE_CHECKING:
    from executors import JobContext


async def noop(ctx: JobContext) -> object:
    return ctx.payload


async def bare_noop(result: list[object], value: object) -> None:
    result.append(value)


async def round_trips_pool(jobs: int) -> list[float]:
    config = PoolConfig(backend="coroutine", entrypoint=noop, idle_executors=2, max_executors=2)
    samples = []
    async with open_pool(config) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        for i in range(jobs):
            start = time.perf_counter()
            await pool.run(i)
            samples.append(time.perf_counter() - start)
    return samples


async def round_trips_bare(jobs: int) -> list[float]:
    samples = []
    for i in range(jobs):
        start = time.perf_counter()
        result: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(bare_noop, result, i)
        samples.append(time.perf_counter() - start)
    return samples


async def throughput_pool(jobs: int) -> float:
    config = PoolConfig(backend="coroutine", entrypoint=noop, idle_executors=64, max_executors=64)
    async with open_pool(config) as pool:
        await pool.wait_until(lambda s: s.idle == 64)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(pool.run, i)
        return jobs / (time.perf_counter() - start)


async def throughput_bare(jobs: int) -> float:
    result: list[object] = []
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(jobs):
            tg.start_soon(bare_noop, result, i)
    return jobs / (time.perf_counter() - start)


async def main(jobs: int) -> None:
    pool_rt = await round_trips_pool(jobs)
    bare_rt = await round_trips_bare(jobs)
    pool_tp = await throughput_pool(jobs)
    bare_tp = await throughput_bare(jobs)
    p50_pool, p50_bare = statistics.median(pool_rt), statistics.median(bare_rt)
    print(f"{'':28}{'pool':>12}{'bare task':>12}{'ratio':>8}")
    print(
        f"{'round trip p50 (us)':28}{p50_pool * 1e6:12.1f}{p50_bare * 1e6:12.1f}"
        f"{p50_pool / p50_bare:8.2f}"
    )
    p99_pool, p99_bare = percentile(pool_rt, 0.99), percentile(bare_rt, 0.99)
    print(
        f"{'round trip p99 (us)':28}{p99_pool * 1e6:12.1f}{p99_bare * 1e6:12.1f}"
        f"{p99_pool / p99_bare:8.2f}"
    )
    print(f"{'throughput (jobs/s)':28}{pool_tp:12.0f}{bare_tp:12.0f}{pool_tp / bare_tp:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--host", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.jobs, backend=args.host)
