"""The synchronous part of ``bench.py``: our ``PoolExecutor`` on the process backend
against ``ProcessPoolExecutor``, as ``concurrent.futures`` code calls them (no event
loop in the calling thread). Ours forks from the process backend's fork server, the
anchor from the harness's forkserver."""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import psutil
from _report import highest_rss, percentile
from _sides import pool_config
from bench_jobs import identity

from executors import PoolExecutor

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Executor
    from multiprocessing.context import ForkServerContext

#: chunk sizes each side's map is timed with; its best one counts
CHUNKSIZES = (100, 1_000, 5_000, 20_000)


@contextlib.contextmanager
def executors(context: ForkServerContext, workers: int) -> Iterator[dict[str, Executor]]:
    """Both sides, warm: every worker has answered once."""
    config = pool_config("process", workers, entrypoint=None)
    with (
        ProcessPoolExecutor(workers, mp_context=context) as ppe,
        PoolExecutor(config=config, name="bench-futures") as ours,
    ):
        sides: dict[str, Executor] = {"PoolExecutor": ours, "ProcessPoolExecutor": ppe}
        for side in sides.values():
            list(side.map(identity, range(4 * workers)))
        yield sides


def round_trips(side: Executor, payloads: range) -> list[float]:
    """Seconds each ``submit(...).result()`` took, one after another."""
    samples = []
    for i in payloads:
        start = time.perf_counter()
        value = side.submit(identity, i).result(60)
        samples.append(time.perf_counter() - start)
        assert value == i
    return samples


def compare_round_trips(sides: dict[str, Executor], settings: Any) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for side in sides.values():
        round_trips(side, range(settings.warmup))
    for payloads in settings.blocks_of(settings.round_trips):
        for name, side in sides.items():
            gc.collect()
            samples[name] += round_trips(side, payloads)
    return {
        name: {
            "p50_us": percentile(values, 0.5) * 1e6,
            "p99_us": percentile(values, 0.99) * 1e6,
            "throughput": math.nan,
        }
        for name, values in samples.items()
    }


def map_seconds(side: Executor, items: int, chunksize: int) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in side.map(identity, range(items), chunksize=chunksize))
    assert count == items
    return time.perf_counter() - start


def compare_maps(sides: dict[str, Executor], settings: Any) -> dict[str, Any]:
    """Seconds to map a no-op over ``settings.map_items`` items, per chunk size: the
    median of a few runs, the sides taking turns; and each side's best."""
    runs: dict[str, dict[int, list[float]]] = {n: {c: [] for c in CHUNKSIZES} for n in sides}
    for _ in range(settings.map_runs):
        for chunksize in CHUNKSIZES:
            for name, side in sides.items():
                gc.collect()
                runs[name][chunksize].append(map_seconds(side, settings.map_items, chunksize))
    results: dict[str, Any] = {"items": settings.map_items}
    for name, by_size in runs.items():
        seconds = {str(c): statistics.median(v) for c, v in by_size.items()}
        best = min(seconds, key=seconds.__getitem__)
        results[name] = {
            "seconds": seconds,
            "best_chunksize": int(best),
            "best_items_per_s": settings.map_items / seconds[best],
        }
    return results


def generator_memory(sides: dict[str, Executor], settings: Any) -> dict[str, float]:
    """Our map over a generator of ``settings.generator_items`` items (chunks of 10,000):
    the host's RSS once a tenth is read, at its highest, and at the end."""
    ours = sides["PoolExecutor"]
    process = psutil.Process()
    total = settings.generator_items
    tenth = total // 10
    readings: dict[str, float] = {}
    gc.collect()
    start = time.perf_counter()
    with highest_rss(0.05) as highest:
        for count, _ in enumerate(
            ours.map(identity, (i for i in range(total)), chunksize=10_000), 1
        ):
            if count == tenth:
                readings["rss_mib_at_a_tenth"] = process.memory_info().rss / 2**20
    readings["rss_mib_at_end"] = process.memory_info().rss / 2**20
    readings["rss_mib_highest"] = max(
        highest() / 2**20, readings["rss_mib_at_end"], readings.get("rss_mib_at_a_tenth", 0.0)
    )
    readings["items"] = total
    readings["seconds"] = time.perf_counter() - start
    return readings
