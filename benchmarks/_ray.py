"""The ray part of ``bench.py``: our pool on the ray backend against bare calls to Ray
actors, on one local Ray started for it (and shut down after). Both sides await Ray
from asyncio: the bare actor's ``ObjectRef`` directly, our pool through its backend.
Our pool runs twice: on its default path (plain actor calls), and with
``compiled_graphs``; the CPU each keeps busy while its executors idle, and while their
jobs sleep, is measured too."""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import psutil
from _sides import Side

from executors import PoolConfig, open_pool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractContextManager

HERE = Path(__file__).resolve().parent
#: logical CPUs of the bench's Ray: each side's executors (one CPU each) fit at once
RAY_CPUS = 8
#: our sides: the backend's option compiled_graphs of each
OURS = {"ray pool": False, "ray pool, compiled graphs": True}
#: seconds over which the machine's busy CPUs are measured
BUSY_SECONDS = 2.0


class Echo:
    """The bare actor: one method that returns its argument."""

    def noop(self, value: object) -> object:
        return value


@contextlib.contextmanager
def local_ray() -> Any:
    """A local Ray for the section. Its workers import this directory's modules by name
    (the pool's no-op job, the bare actor's class): its raylet inherits PYTHONPATH."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _config(executors: int, name: str = "ray pool", entrypoint: str | None = None) -> PoolConfig:
    return PoolConfig(
        backend="ray",
        entrypoint=entrypoint or "bench_jobs:noop",
        idle_executors=executors,
        max_executors=executors,
        max_concurrent_initializations=executors,
        max_pending=None,
        backend_options={"compiled_graphs": OURS[name]},
    )


@contextlib.asynccontextmanager
async def ours(executors: int, name: str) -> AsyncIterator[Side]:
    async with open_pool(_config(executors, name)) as pool:
        await pool.wait_until(lambda s: s.idle >= executors)
        yield Side(name, pool.run, pool)


async def _answering(actors: int) -> list[Any]:
    """``actors`` bare actors, created at once, each once it has given its first reply."""
    import ray

    echo: Any = ray.remote(Echo)
    handles = [echo.remote() for _ in range(actors)]
    for handle in handles:
        await handle.noop.remote(0)
    return handles


@contextlib.asynccontextmanager
async def bare(actors: int) -> AsyncIterator[Side]:
    """Bare actors, called in turn: what the pool's executors are, without the pool.
    With many calls in flight, Ray queues them in each actor's mailbox: an actor runs
    the next as soon as the last ends, with no round trip between."""
    import ray

    handles = await _answering(actors)
    turns = itertools.cycle(handles)

    async def call(i: int) -> object:
        return await next(turns).noop.remote(i)

    try:
        yield Side("Ray actor", call)
    finally:
        for handle in handles:
            ray.kill(handle)


@contextlib.asynccontextmanager
async def one_call_each(actors: int) -> AsyncIterator[Side]:
    """Bare actors given one call at a time each, a call waiting for a free actor (as
    ``ray.util.ActorPool`` hands them out): the dispatch of a pool of slots, which the
    pool's contract (one job per executor at a time) also keeps."""
    import ray

    handles = await _answering(actors)
    send, receive = anyio.create_memory_object_stream[Any](actors)
    for handle in handles:
        send.send_nowait(handle)

    async def call(i: int) -> object:
        handle = await receive.receive()
        try:
            return await handle.noop.remote(i)
        finally:
            send.send_nowait(handle)

    try:
        yield Side("Ray actors, one call each", call)
    finally:
        send.close()
        receive.close()
        for handle in handles:
            ray.kill(handle)


async def warm(executors: int, starts: int) -> dict[str, float]:
    """Milliseconds from nothing to ``executors`` warm executors (our pool: opened, and
    that many idle; bare: that many actors created, each with its first reply): the
    median of ``starts`` starts, the sides taking turns."""
    import ray

    async def bare_start() -> None:
        handles = await _answering(executors)
        for handle in handles:
            ray.kill(handle)

    def our_start(name: str) -> Callable[[], Any]:
        async def start() -> None:
            async with open_pool(_config(executors, name)) as pool:
                await pool.wait_until(lambda s: s.idle >= executors)

        return start

    sides: dict[str, Callable[[], Any]] = {name: our_start(name) for name in OURS}
    sides["Ray actors"] = bare_start
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(starts):
        for name, start in sides.items():
            began = time.perf_counter()
            await start()
            times[name].append((time.perf_counter() - began) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _busy_cpus() -> Callable[[], float]:
    """A stopwatch of the machine's busy CPUs: call it to read how many were busy on
    average since it was made."""
    times = psutil.cpu_times()

    def read() -> float:
        now = psutil.cpu_times()
        idle = now.idle - times.idle + getattr(now, "iowait", 0) - getattr(times, "iowait", 0)
        total = sum(now) - sum(times)
        return (total - idle) / total * (psutil.cpu_count() or 1) if total > 0 else 0.0

    return read


async def busy(executors: int, seconds: float) -> dict[str, dict[str, float]]:
    """The machine's busy CPUs over ``seconds``, for each of our sides: while its
    ``executors`` idle, and while each runs a job that sleeps."""
    results: dict[str, dict[str, float]] = {}
    for name in OURS:
        async with open_pool(_config(executors, name, "bench_jobs:sleeper")) as pool:
            await pool.wait_until(lambda s: s.idle >= executors)
            reading = _busy_cpus()
            await anyio.sleep(seconds)
            idle = reading()
            async with anyio.create_task_group() as tg:
                for _ in range(executors):
                    tg.start_soon(pool.run, seconds + 1.0)
                await pool.wait_until(lambda s: s.busy >= executors)
                reading = _busy_cpus()
                await anyio.sleep(seconds)
                sleeping = reading()
        results[name] = {"idle": idle, "sleeping": sleeping}
    return results


async def section(
    settings: Any,
    compare: Callable[[list[Side], Any], Any],
    watching: Callable[[str], AbstractContextManager[None]],
    workers: int,
    warm_executors: int,
) -> dict[str, Any]:
    print("ray ...", file=sys.stderr)
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        sides = [
            *[await stack.enter_async_context(ours(workers, name)) for name in OURS],
            await stack.enter_async_context(bare(workers)),
            await stack.enter_async_context(one_call_each(workers)),
        ]
        with watching("ray"):
            results["ray"] = await compare(sides, settings)
    with watching("ray_lifecycle"):
        results["ray_lifecycle"] = {"warm_ms": await warm(warm_executors, settings.starts)}
    seconds = BUSY_SECONDS / 4 if settings.quick else BUSY_SECONDS
    results["ray_lifecycle"]["busy_cpus"] = await busy(workers, seconds)
    results["ray_lifecycle"]["busy_seconds"] = seconds
    return results
