"""The harness behind ``bench.py``: what it measures and how (see ``bench.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import tracemalloc
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _payloads
import _sides
import _sync
import anyio
import psutil
from _report import in_flight, percentile, round_trips
from _sides import Side

from executors import open_pool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractAsyncContextManager
    from multiprocessing.context import ForkServerContext

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = "Every backend against what a user would pick instead, in one run."
WORKERS = 2
IN_FLIGHT = 64
WARM = 4
#: seconds a side keeps running jobs after a SIGKILLed worker, to show whether it broke
SETTLE = 0.5
#: seconds a call may take after a SIGKILLed worker before the side counts as hung
HANG = 10.0
#: what a pool that cannot recover from a dead worker raises from then on
BROKEN = ("BrokenProcessPool", "TerminatedWorkerError")
PACKAGES = ["executors-core", "anyio", "trio", "loky", "pebble", "trio-parallel", "ray", "psutil"]


#: ProcessPoolExecutor(WARM) timed to the results of WARM calls made at once, which
#: start its WARM workers: the like-for-like of our WARM warm executors
PPE_STARTED = f"ProcessPoolExecutor, {WARM} started"


class Settings:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.round_trips = 100 if quick else 2000
        self.jobs = 200 if quick else 3000
        self.warmup = 20 if quick else 200
        self.blocks = 2 if quick else 5
        # cold starts vary by a third from one to the next: a median needs a few
        self.starts = 1 if quick else 15
        self.kills = 1 if quick else 3
        self.running = 200 if quick else 5000
        # the synchronous part (_sync): map sizes, and how many times each is timed
        self.map_items = 2_000 if quick else 100_000
        self.map_runs = 1 if quick else 3
        self.generator_items = 50_000 if quick else 10_000_000

    def blocks_of(self, total: int) -> list[range]:
        size = max(1, total // self.blocks)
        return [range(start, start + size) for start in range(0, size * self.blocks, size)]


# -- measuring sides that run together -------------------------------------------------------


async def compare(sides: list[Side], settings: Settings) -> dict[str, dict[str, float]]:
    """Round trips and throughput of ``sides``, alternating in blocks."""
    for side in sides:
        await round_trips(side.call, range(settings.warmup))
    samples: dict[str, list[float]] = {side.name: [] for side in sides}
    seconds = dict.fromkeys(samples, 0.0)
    for payloads in settings.blocks_of(settings.round_trips):
        for side in sides:
            gc.collect()
            samples[side.name] += await round_trips(side.call, payloads)
    jobs = 0
    for payloads in settings.blocks_of(settings.jobs):
        jobs += len(payloads)
        for side in sides:
            if side.concurrent:
                gc.collect()
                seconds[side.name] += await in_flight(side.call, payloads, IN_FLIGHT)
    return {
        name: {
            "p50_us": percentile(samples[name], 0.5) * 1e6,
            "p99_us": percentile(samples[name], 0.99) * 1e6,
            "throughput": jobs / seconds[name] if seconds[name] else math.nan,
        }
        for name in samples
    }


async def together(
    openers: list[Callable[[], AbstractAsyncContextManager[Side]]], settings: Settings
) -> dict[str, dict[str, float]]:
    async with contextlib.AsyncExitStack() as stack:
        sides = [await stack.enter_async_context(opener()) for opener in openers]
        return await compare(sides, settings)


# -- process pools, one at a time ----------------------------------------------------------


async def warm_up(opener: Callable[[], AbstractAsyncContextManager[Side]], calls: int = 1) -> float:
    """Seconds from opening the side to its first result, or to the results of
    ``calls`` calls made at once (our pool: to WARM idle executors, which it reaches
    before any result)."""
    start = time.perf_counter()
    async with opener() as side:
        if side.pool is None:
            values = await asyncio.gather(*(side.call(i) for i in range(calls)))
            assert values == list(range(calls))
        elapsed = time.perf_counter() - start
        if calls > 1:  # each call found no idle worker, so each started one
            started = len(_sides.descendants())
            assert started >= calls, f"{side.name} started {started} workers, not {calls}"
    return elapsed


async def fill(side: Side, workers: int) -> None:
    """Make sure every worker of a lazily starting pool exists."""

    async def call(i: int) -> None:
        await side.call(i)

    for _ in range(3):
        async with anyio.create_task_group() as tg:
            for i in range(workers * 4):
                tg.start_soon(call, i)


def uss_mib(pids: set[int]) -> float:
    sizes = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            sizes.append(psutil.Process(pid).memory_full_info().uss)
    return statistics.mean(sizes) / (1 << 20) if sizes else math.nan


async def memory_per_worker(opener: Callable[[], AbstractAsyncContextManager[Side]]) -> float:
    before = _sides.descendants()
    async with opener() as side:
        await fill(side, WORKERS)
        return uss_mib(_sides.descendants() - before)


async def recovery(
    opener: Callable[[], AbstractAsyncContextManager[Side]],
) -> dict[str, Any]:
    """SIGKILL an idle worker of a pool left alone: for our pool, seconds until it is
    back at its idle target. Then SIGKILL another and call the pool at once: seconds
    until a job succeeds, how many calls failed meanwhile, or how the side broke."""
    before = _sides.descendants()
    async with opener() as side:
        await fill(side, WORKERS)
        result: dict[str, Any] = {}
        if side.pool is not None:
            pool = side.pool
            started = pool.statistics().executors_started
            killed = _kill_one(before)
            with anyio.fail_after(60):
                await pool.wait_until(lambda s: s.executors_started > started and s.idle >= WORKERS)
            result["idle_target_s"] = time.perf_counter() - killed
        killed = _kill_one(before)
        errors = 0
        with anyio.fail_after(60):
            while "job_ok_s" not in result or time.perf_counter() - killed < SETTLE:
                # Calls go on for SETTLE seconds after the first success: a pool that
                # notices the death only later, and breaks then, shows it.
                try:
                    with anyio.fail_after(HANG):
                        await side.call(7)
                    result.setdefault("job_ok_s", time.perf_counter() - killed)
                except TimeoutError:
                    return {"hung": f"a call did not return within {HANG} s"}
                except Exception as exc:
                    errors += 1
                    if type(exc).__name__ in BROKEN or errors > 200:
                        return {"broken": type(exc).__name__}
        result["jobs_failed"] = errors
        return result


def _kill_one(before: set[int]) -> float:
    """SIGKILL the newest worker started since ``before``; when it was killed."""
    workers = sorted(
        _sides.descendants() - before, key=lambda pid: psutil.Process(pid).create_time()
    )
    os.kill(workers[-1], signal.SIGKILL)
    return time.perf_counter()


async def one_at_a_time(context: ForkServerContext, settings: Settings) -> dict[str, Any]:
    warm: dict[str, list[float]] = {}
    starts: list[tuple[str, Callable[[], AbstractAsyncContextManager[Side]]]] = [
        ("process pool", lambda: _sides.ours("process", WARM)),
        ("ProcessPoolExecutor", lambda: _sides.ppe(context, WARM)),
    ]
    if _sides.installed("loky"):
        starts.append(("loky", lambda: _sides.loky_executor(WARM)))
    if _sides.installed("pebble"):
        starts.append(("pebble", lambda: _sides.pebble_pool(context, WARM)))
    # ProcessPoolExecutor(4) with its 4 workers started: 4 calls at once, each of which
    # waits for the 4 workers to have come
    timed = [(name, opener, 1) for name, opener in starts]
    timed.append((PPE_STARTED, lambda: _sides.ppe_started(context, WARM), WARM))
    for turn in range(settings.starts):
        # Each side opens a turn in its turn: the first start after the pause between
        # two (the slowest side's, and the collection before each) is about 1 ms
        # slower, whichever side makes it: the CPUs come back from idle.
        first = turn % len(timed)
        for name, opener, calls in timed[first:] + timed[:first]:
            gc.collect()
            warm.setdefault(name, []).append(await warm_up(opener, calls=calls))
    pools = dict(starts)
    memory: dict[str, float] = {}
    recoveries: dict[str, list[dict[str, Any]]] = {}
    two: dict[str, Callable[[], AbstractAsyncContextManager[Side]]] = {
        "process pool": lambda: _sides.ours("process", WORKERS),
        "ProcessPoolExecutor": lambda: _sides.ppe(context, WORKERS),
    }
    if "loky" in pools:
        two["loky"] = lambda: _sides.loky_executor(WORKERS)
    if "pebble" in pools:
        two["pebble"] = lambda: _sides.pebble_pool(context, WORKERS)
    for name, opener in two.items():
        print(f"  {name}", file=sys.stderr)
        memory[name] = await memory_per_worker(opener)
        for _ in range(settings.kills):
            recoveries.setdefault(name, []).append(await recovery(opener))
    return {
        "warm_ms": {name: statistics.median(v) * 1e3 for name, v in warm.items()},
        "uss_mib_per_worker": memory,
        "recovery": {name: summarize_recovery(r) for name, r in recoveries.items()},
    }


def summarize_recovery(runs: list[dict[str, Any]]) -> dict[str, Any]:
    broken = [run["broken"] for run in runs if "broken" in run]
    if broken:
        return {"broken": broken[0]}
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0]}
    hung = [run["hung"] for run in runs if "hung" in run]
    if hung:
        return {"hung": hung[0]}
    summary: dict[str, Any] = {"job_ok_ms": statistics.median(r["job_ok_s"] for r in runs) * 1e3}
    if all("idle_target_s" in r for r in runs):
        summary["idle_target_ms"] = statistics.median(r["idle_target_s"] for r in runs) * 1e3
    summary["jobs_failed"] = sum(r["jobs_failed"] for r in runs)
    return summary


# -- the coroutine backend's memory per running job -----------------------------------------


async def memory_per_running_job(settings: Settings) -> dict[str, float]:
    """Bytes each running job holds (tracemalloc), a bare task and a job of our pool,
    every job waiting on one event."""
    n = settings.running
    release = asyncio.Event()

    async def waiting(_: object) -> None:
        await release.wait()

    async def measure(
        start: Callable[[], list[asyncio.Task[Any]]], ready: Callable[[], Any]
    ) -> float:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        tasks = start()
        await ready()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        release.set()
        await asyncio.gather(*tasks)
        release.clear()
        return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / n

    bare = await measure(
        lambda: [asyncio.create_task(waiting(i)) for i in range(n)], lambda: asyncio.sleep(0.05)
    )
    config = _sides.pool_config("coroutine", n, entrypoint=waiting)
    async with open_pool(config) as pool:
        await pool.wait_until(lambda s: s.idle >= n)
        job = await measure(
            lambda: [asyncio.create_task(pool.run(i)) for i in range(n)],
            lambda: pool.wait_until(lambda s: s.busy >= n),
        )
    return {"bare_task_bytes": bare, "pool_job_bytes": job, "extra_bytes": job - bare}


# -- a disturbed machine ------------------------------------------------------------------

#: the share of the machine's CPU time its hypervisor may take (steal) while a part of the
#: run is measured before that part's figures are flagged: a quiet virtual machine loses
#: well under 1%, one whose host is busy a quarter and more
DISTURBED = 0.05


def stolen_share(before: Any, after: Any) -> float:
    """The share of CPU time between two ``psutil.cpu_times()`` readings that the
    hypervisor took (Linux's "steal"); NaN where the system does not report it."""
    if not hasattr(after, "steal"):
        return math.nan
    # guest time is counted in user time already (Linux)
    fields = [f for f in after._fields if f not in ("guest", "guest_nice")]
    total = sum(getattr(after, f) - getattr(before, f) for f in fields)
    return (after.steal - before.steal) / total if total > 0 else math.nan


@contextlib.contextmanager
def watching_steal(steal: dict[str, float], part: str) -> Iterator[None]:
    """Records in ``steal[part]`` the share of CPU time stolen while the block runs."""
    before = psutil.cpu_times()
    yield
    steal[part] = stolen_share(before, psutil.cpu_times())


def disturbed(share: float) -> bool:
    return share > DISTURBED


def _threads() -> list[int]:
    """The ids of this process's threads (Linux); the calling thread alone elsewhere."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


@contextlib.contextmanager
def on_one_cpu() -> Iterator[bool]:
    """Runs the block with every thread of this process, and every thread they start,
    on one CPU; yields whether it could (``sched_setaffinity`` is Linux's). Each thread
    gets back the CPUs it was allowed before.

    A hand-off between two threads costs about 15 µs when the scheduler keeps them on one
    CPU and about 60 µs when it puts them on two (one more wake-up of an idle CPU, which
    a virtual machine makes dear). Where it puts them is its choice, and it sticks to it
    for seconds: a run of the thread sides draws one placement per side, and their ratio
    then moves by a third from one run to the next. On one CPU every side pays only for
    what its own code does, the same in every run.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield False
        return
    allowed = {tid: os.sched_getaffinity(tid) for tid in _threads()}
    cpu = {min(os.sched_getaffinity(0))}
    for tid in allowed:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpu)
    try:
        yield True
    finally:
        everything = set().union(*allowed.values())
        for tid in _threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, allowed.get(tid, everything))


# -- the run ---------------------------------------------------------------------------------


def thread_sides(
    anchor: Callable[[], AbstractAsyncContextManager[Side]],
    floor: Callable[[], AbstractAsyncContextManager[Side]],
) -> list[Callable[[], AbstractAsyncContextManager[Side]]]:
    """Our thread pool, the host's own thread anchor, anyio.to_thread and the floor."""
    return [
        lambda: _sides.ours("thread", WORKERS),
        anchor,
        lambda: _sides.to_thread(WORKERS),
        floor,
    ]


async def on_asyncio(
    context: ForkServerContext, settings: Settings, steal: dict[str, float]
) -> dict[str, Any]:
    process_sides: list[Callable[[], AbstractAsyncContextManager[Side]]] = [
        lambda: _sides.ours("process", WORKERS),
        lambda: _sides.ppe(context, WORKERS),
        lambda: _sides.to_process(WORKERS),
        lambda: _sides.socketpair_floor(context),
    ]
    if _sides.installed("loky"):
        process_sides.append(lambda: _sides.loky_executor(WORKERS))
    if _sides.installed("pebble"):
        process_sides.append(lambda: _sides.pebble_pool(context, WORKERS))
    results: dict[str, Any] = {}
    print("process pools ...", file=sys.stderr)
    with watching_steal(steal, "process"):
        results["process"] = await together(process_sides, settings)
    with watching_steal(steal, "payloads"):
        results["payloads"] = await _payloads.section(
            context, settings.quick, 1 if settings.quick else 3
        )
    print("thread pools ...", file=sys.stderr)
    with watching_steal(steal, "thread"):
        results["thread"] = await together(
            thread_sides(lambda: _sides.tpe(WORKERS), _sides.thread_floor), settings
        )
    print("thread pools on one CPU ...", file=sys.stderr)
    with watching_steal(steal, "thread_one_cpu"), on_one_cpu():
        results["thread_one_cpu"] = await together(
            thread_sides(lambda: _sides.tpe(WORKERS), _sides.thread_floor), settings
        )
    print("coroutines ...", file=sys.stderr)
    with watching_steal(steal, "coroutine"):
        results["coroutine"] = await together(
            [lambda: _sides.ours("coroutine", WORKERS), _sides.asyncio_task], settings
        )
    with watching_steal(steal, "coroutine_memory"):
        results["coroutine_memory"] = await memory_per_running_job(settings)
    print("process pools one at a time ...", file=sys.stderr)
    with watching_steal(steal, "process_lifecycle"):
        results["process_lifecycle"] = await one_at_a_time(context, settings)
    return results


async def on_trio(settings: Settings, steal: dict[str, float]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    sides: list[Callable[[], AbstractAsyncContextManager[Side]]] = [
        lambda: _sides.ours("process", WORKERS)
    ]
    if _sides.installed("trio_parallel"):
        sides.append(lambda: _sides.trio_parallel_side(WORKERS))
    print("process pools on trio ...", file=sys.stderr)
    with watching_steal(steal, "process_trio"):
        results["process_trio"] = await together(sides, settings)
    print("thread pools on trio ...", file=sys.stderr)
    with watching_steal(steal, "thread_trio"):
        results["thread_trio"] = await together(
            thread_sides(lambda: _sides.trio_to_thread(WORKERS), _sides.trio_thread_floor),
            settings,
        )
    print("coroutines on trio ...", file=sys.stderr)
    with watching_steal(steal, "coroutine_trio"):
        results["coroutine_trio"] = await together(
            [lambda: _sides.ours("coroutine", WORKERS), _sides.trio_task], settings
        )
    return results


def synchronous(
    context: ForkServerContext, settings: Settings, steal: dict[str, float]
) -> dict[str, Any]:
    """Our PoolExecutor against ProcessPoolExecutor, called as synchronous code does."""
    print("concurrent.futures executors ...", file=sys.stderr)
    results: dict[str, Any] = {}
    with _sync.executors(context, WORKERS) as sides:
        with watching_steal(steal, "futures"):
            results["futures"] = _sync.compare_round_trips(sides, settings)
        with watching_steal(steal, "futures_map"):
            results["futures_map"] = _sync.compare_maps(sides, settings)
        with watching_steal(steal, "futures_generator"):
            results["futures_generator"] = _sync.generator_memory(sides, settings)
    return results


def on_ray(settings: Settings, steal: dict[str, float]) -> dict[str, Any]:
    """Our pool on the ray backend against bare Ray actors, on a local Ray of the
    section's own, started last (its processes and threads live until it ends)."""
    import _ray

    with _ray.local_ray():
        return anyio.run(
            _ray.section,
            settings,
            compare,
            lambda part: watching_steal(steal, part),
            WORKERS,
            WARM,
        )


#: (key, what, ours, anchor, "<=" or ">=", limit): ours and anchor are paths into the
#: results, "/"-separated
TARGETS = [
    (
        "process_p50_vs_ppe",
        "process: round-trip p50 / ProcessPoolExecutor's",
        "process/process pool/p50_us",
        "process/ProcessPoolExecutor/p50_us",
        "<=",
        0.5,
    ),
    (
        "process_p50_vs_floor",
        "process: round-trip p50 / the socketpair floor's",
        "process/process pool/p50_us",
        "process/socketpair floor/p50_us",
        "<=",
        2.5,
    ),
    (
        "process_throughput_vs_ppe",
        "process: throughput / ProcessPoolExecutor's",
        "process/process pool/throughput",
        "process/ProcessPoolExecutor/throughput",
        ">=",
        1.5,
    ),
    *[
        (
            f"payload_{size}mb_vs_{anchor}",
            f"process: {size} MB echo, MB/s / {name}",
            f"payloads/{size} MB/process pool",
            f"payloads/{size} MB/{side}",
            ">=",
            limit,
        )
        for size in (10, 100)
        for anchor, name, side, limit in (
            ("ppe", "ProcessPoolExecutor's", "ProcessPoolExecutor", 4.0),
            ("floor", "the socketpair floor's", "socketpair floor", 0.5),
        )
    ],
    (
        "thread_p50_vs_to_thread",
        "thread: round-trip p50 / anyio.to_thread.run_sync's, on one CPU",
        "thread_one_cpu/thread pool/p50_us",
        "thread_one_cpu/anyio.to_thread/p50_us",
        "<=",
        0.75,
    ),
    (
        "thread_throughput_vs_tpe",
        "thread: throughput, 64 in flight / ThreadPoolExecutor's",
        "thread/thread pool/throughput",
        "thread/ThreadPoolExecutor/throughput",
        ">=",
        1.0,
    ),
    (
        "coroutine_p50_vs_task",
        "coroutine: round-trip p50 / asyncio.create_task's",
        "coroutine/coroutine pool/p50_us",
        "coroutine/asyncio.create_task/p50_us",
        "<=",
        3.0,
    ),
    (
        "coroutine_memory",
        "coroutine: extra memory per running job / a bare task's",
        "coroutine_memory/extra_bytes",
        "coroutine_memory/bare_task_bytes",
        "<=",
        1.0,
    ),
    (
        "futures_p50_vs_ppe",
        "PoolExecutor: submit().result() p50 / ProcessPoolExecutor's",
        "futures/PoolExecutor/p50_us",
        "futures/ProcessPoolExecutor/p50_us",
        "<=",
        0.5,
    ),
    (
        "futures_map_vs_ppe",
        "PoolExecutor: map of 100,000 tiny items, items/s / ProcessPoolExecutor.map's "
        "(each at its best chunksize)",
        "futures_map/PoolExecutor/best_items_per_s",
        "futures_map/ProcessPoolExecutor/best_items_per_s",
        ">=",
        2.0,
    ),
    (
        "futures_generator_memory",
        "PoolExecutor: map over a 10,000,000-item generator, host RSS at its highest / "
        "once a tenth is read",
        "futures_generator/rss_mib_highest",
        "futures_generator/rss_mib_at_a_tenth",
        "<=",
        1.1,
    ),
    (
        "ray_p50_vs_actor",
        "ray: round-trip p50 / a bare Ray actor call's",
        "ray/ray pool/p50_us",
        "ray/Ray actor/p50_us",
        "<=",
        1.3,
    ),
    (
        "ray_throughput_vs_actor",
        "ray: throughput, 64 in flight / bare Ray actor calls'",
        "ray/ray pool/throughput",
        "ray/Ray actor/throughput",
        ">=",
        0.8,
    ),
    (
        "ray_warm_4_vs_actors",
        "ray: 4 warm executors / 4 bare Ray actors created and answering",
        "ray_lifecycle/warm_ms/ray pool",
        "ray_lifecycle/warm_ms/Ray actors",
        "<=",
        1.5,
    ),
    (
        "warm_4_vs_ppe",
        "4 warm process executors / ProcessPoolExecutor(4)'s first result",
        "process_lifecycle/warm_ms/process pool",
        "process_lifecycle/warm_ms/ProcessPoolExecutor",
        "<=",
        1.0,
    ),
]


def dig(results: dict[str, Any], path: str) -> float:
    value: Any = results
    for key in path.split("/"):
        value = value[key]
    return float(value)


#: a target whose ratio is this close to its limit (as a share of it) is flagged: the
#: ratio of two sides moves by that much between runs on a noisy machine (timings), or
#: with the state of the allocator and the collector (the bytes a running job holds)
CLOSE = 0.1


def close_to(ratio: float, limit: float) -> bool:
    """Whether one run's *ratio* is too close to *limit* to tell if the target holds."""
    return abs(ratio - limit) <= CLOSE * limit


def targets(results: dict[str, Any], steal: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for key, text, ours_path, anchor_path, kind, limit in TARGETS:
        if ours_path.split("/", 1)[0] not in results:
            continue  # a section not run: its package is not installed (see "missing")
        ratio = dig(results, ours_path) / dig(results, anchor_path)
        stolen = steal.get(ours_path.split("/", 1)[0], math.nan)
        rows.append(
            {
                "key": key,
                "target": text,
                "ratio": ratio,
                "limit": f"{kind} {limit}",
                "met": ratio <= limit if kind == "<=" else ratio >= limit,
                "close": close_to(ratio, limit),
                "steal": stolen,
                "disturbed": disturbed(stolen),
            }
        )
    return rows


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu
        )
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="a smoke test of a few seconds")
    parser.add_argument("--json", type=Path, default=ROOT / "docs/benchmarks/results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs/benchmarks")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the page and plots from the results in JSON (as a run "
        "wrote them)",
    )
    options = parser.parse_args()
    if options.render is not None:
        render(json.loads(options.render.read_text(encoding="utf-8")), options)
        return
    settings = Settings(options.quick)
    began = time.perf_counter()
    context = _sides.forkserver()
    _sides.our_fork_server()
    steal: dict[str, float] = {}
    results = anyio.run(on_asyncio, context, settings, steal)
    results.update(anyio.run(on_trio, settings, steal, backend="trio"))
    results.update(synchronous(context, settings, steal))
    if _sides.installed("ray"):
        results.update(on_ray(settings, steal))
    document = {
        "command": " ".join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        "machine": machine(),
        "settings": {
            "workers": WORKERS,
            "in_flight": IN_FLIGHT,
            "warm": WARM,
            "close_share": CLOSE,
            "disturbed_share": DISTURBED,
            "one_cpu": hasattr(os, "sched_setaffinity"),
            **vars(settings),
        },
        "missing": [
            p for p in ("loky", "pebble", "trio_parallel", "ray") if not _sides.installed(p)
        ],
        "seconds": round(time.perf_counter() - began, 1),
        "results": results,
        "steal": steal,
        "targets": targets(results, steal),
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    render(document, options)


def render(document: dict[str, Any], options: argparse.Namespace) -> None:
    """The page and its plots from a run's ``document``; its summary on stdout."""
    import _bench_report

    plots = _bench_report.plots(document, options.plots)
    options.markdown.write_text(
        _bench_report.markdown(document, plots, options.markdown), encoding="utf-8"
    )
    print(_bench_report.summary(document))
