"""Warm round trip, throughput and start-up of the process backend, against
``concurrent.futures.ProcessPoolExecutor``.

Run: ``.venv/bin/python benchmarks/bench_process.py [--jobs N] [--quick] [--json PATH]``.

Both sides run in the same process and the same run, with 2 workers each, forked by the
same forkserver; it is started once, before anything is timed, with the modules the
pool preloads (its worker module and ``bench_jobs``). Each measurement alternates
between the two sides in blocks, so that a machine that gets busier or quieter during
the run treats both alike. The figures that matter are the ratios, not the absolute
times. The run checks that it leaves no process, thread or descriptor behind
(``executors.testing.no_leaks``).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import multiprocessing.forkserver
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import anyio
import attrs
from _report import (
    Row,
    blocks_of,
    in_flight,
    parse_options,
    percentile,
    report,
    round_trips,
)
from _report import Settings as BaseSettings
from bench_jobs import identity

from executors import PoolConfig, open_pool
from executors.testing import no_leaks

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext

    from executors import Pool

WORKERS = 2
IN_FLIGHT = 64
#: the forkserver's preload list, as the process backend asks for it
PRELOAD = ["executors_process._worker", "bench_jobs"]
ANCHOR = "ProcessPoolExecutor"
OURS = "process pool"


@attrs.frozen
class Settings(BaseSettings):
    #: start-ups timed per side and size; the median is reported
    starts: int
    start_sizes: tuple[int, ...] = (2, 4)


def pool_config(workers: int) -> PoolConfig:
    return PoolConfig(
        backend="process",
        entrypoint="bench_jobs:noop",
        idle_executors=workers,
        max_executors=workers,
        # The anchor starts all its processes at once; so does the pool here.
        max_concurrent_initializations=workers,
        backend_options={"start_method": "forkserver"},
    )


def start_forkserver() -> ForkServerContext:
    """The forkserver is shared by everything in this interpreter and lives as long as
    it: start it now, so that neither side is charged with its start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context


# -- the pool: each function times one block (round trips and jobs in flight: _report) ---


async def pool_submit_all(pool: Pool, payloads: range) -> float:
    start = time.perf_counter()
    handles = [await pool.submit(i) for i in payloads]
    for handle in handles:
        assert (await handle.outcome()).ok
    return time.perf_counter() - start


async def pool_start(workers: int) -> float:
    """From ``open_pool`` to ``workers`` warm executors (the pool's close is not timed)."""
    start = time.perf_counter()
    async with open_pool(pool_config(workers)) as pool:
        await pool.wait_until(lambda s: s.idle >= workers)
        elapsed = time.perf_counter() - start
    return elapsed


# -- the anchor ----------------------------------------------------------------------------


def anchor_round_trips(executor: ProcessPoolExecutor, payloads: range) -> list[float]:
    samples = []
    for i in payloads:
        start = time.perf_counter()
        value = executor.submit(identity, i).result()
        samples.append(time.perf_counter() - start)
        assert value == i
    return samples


async def anchor_round_trips_async(executor: ProcessPoolExecutor, payloads: range) -> list[float]:
    async def wrapped(i: int) -> object:
        return await asyncio.wrap_future(executor.submit(identity, i))

    return await round_trips(wrapped, payloads)


def anchor_map(executor: ProcessPoolExecutor, payloads: range) -> float:
    start = time.perf_counter()
    values = list(executor.map(identity, payloads, chunksize=1))
    elapsed = time.perf_counter() - start
    assert values == list(payloads)
    return elapsed


def anchor_submit_all(executor: ProcessPoolExecutor, payloads: range) -> float:
    start = time.perf_counter()
    futures = [executor.submit(identity, i) for i in payloads]
    values = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    assert values == list(payloads)
    return elapsed


def anchor_start(context: ForkServerContext, workers: int, jobs: int) -> float:
    """From ``ProcessPoolExecutor()`` to the results of ``jobs`` jobs submitted at once.
    Its workers start lazily: one per submit that finds none idle."""
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=context) as executor:
        futures = [executor.submit(identity, i) for i in range(jobs)]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
    return elapsed


# -- the run: the anchor's sync calls block the event loop, which only the pool's idle
# -- background tasks share ---------------------------------------------------------------


async def round_trip_rows(
    pool: Pool, executor: ProcessPoolExecutor, settings: Settings
) -> list[Row]:
    await round_trips(pool.run, range(settings.warmup))
    anchor_round_trips(executor, range(settings.warmup))
    ours: list[float] = []
    anchors: dict[str, list[float]] = {"sync": [], "async": []}
    for payloads in blocks_of(settings):
        gc.collect()
        ours += await round_trips(pool.run, payloads)
        gc.collect()
        anchors["sync"] += anchor_round_trips(executor, payloads)
        gc.collect()
        anchors["async"] += await anchor_round_trips_async(executor, payloads)
    return [
        Row(
            f"round trip {name} (us), anchor {kind}",
            "us",
            percentile(ours, q) * 1e6,
            percentile(samples, q) * 1e6,
        )
        for name, q in (("p50", 0.5), ("p99", 0.99))
        for kind, samples in anchors.items()
    ]


async def throughput_rows(
    pool: Pool, executor: ProcessPoolExecutor, settings: Settings
) -> list[Row]:
    seconds = dict.fromkeys(("in_flight", "map", "submit_all", "anchor_submit_all"), 0.0)
    for payloads in blocks_of(settings):
        gc.collect()
        seconds["in_flight"] += await in_flight(pool.run, payloads, IN_FLIGHT)
        gc.collect()
        seconds["map"] += anchor_map(executor, payloads)
        gc.collect()
        seconds["submit_all"] += await pool_submit_all(pool, payloads)
        gc.collect()
        seconds["anchor_submit_all"] += anchor_submit_all(executor, payloads)
    jobs = sum(len(payloads) for payloads in blocks_of(settings))
    return [
        Row(
            f"throughput (jobs/s), {IN_FLIGHT} in flight / map",
            "jobs/s",
            jobs / seconds["in_flight"],
            jobs / seconds["map"],
        ),
        Row(
            "throughput (jobs/s), submit all",
            "jobs/s",
            jobs / seconds["submit_all"],
            jobs / seconds["anchor_submit_all"],
        ),
    ]


async def start_rows(context: ForkServerContext, settings: Settings) -> list[Row]:
    rows = []
    for n in settings.start_sizes:
        ours: list[float] = []
        first: list[float] = []
        every: list[float] = []
        for _ in range(settings.starts):
            ours.append(await pool_start(n))
            first.append(anchor_start(context, n, 1))
            every.append(anchor_start(context, n, n))
        label = f"{n} warm workers (ms), anchor"
        rows += [
            Row(f"{label} 1st result", "ms", median_ms(ours), median_ms(first)),
            Row(f"{label} {n} results", "ms", median_ms(ours), median_ms(every)),
        ]
    return rows


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


async def measure(context: ForkServerContext, settings: Settings) -> list[Row]:
    with ProcessPoolExecutor(WORKERS, mp_context=context) as executor:
        async with open_pool(pool_config(WORKERS)) as pool:
            await pool.wait_until(lambda s: s.idle >= WORKERS)
            rows = await round_trip_rows(pool, executor, settings)
            rows += await throughput_rows(pool, executor, settings)
    return rows + await start_rows(context, settings)


def main() -> None:
    options = parse_options(__doc__, quick="200 jobs, one start: a smoke test")
    settings = Settings.from_options(options, starts=1 if options.quick else 5)
    with no_leaks():
        context = start_forkserver()
        rows = anyio.run(measure, context, settings)
    report(rows, options, settings, ours=OURS, anchor=ANCHOR, workers=WORKERS, in_flight=IN_FLIGHT)


if __name__ == "__main__":
    main()
