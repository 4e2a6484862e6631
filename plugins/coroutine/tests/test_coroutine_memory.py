"""What a running job of the coroutine backend holds, against a bare asyncio task.

tracemalloc counts the bytes each allocation asks for: the same code on the same Python
allocates the same, so this is no timing assertion and does not depend on the machine.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest

from executors import PoolConfig, open_pool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

#: jobs running at once: enough for the dicts that grow with them to average out
RUNNING = 2000
#: a running job may hold this much more than a bare task, as a share of what a bare task
#: holds. The project's target is 1.0 (the benchmarks measure 0.87 to 0.97 on Python
#: 3.11, this test 0.95 to 0.97); the margin is for dicts that grow at other sizes. A job
#: held 2.56 before its cancel scopes and extra frames went, and one more frame of the
#: pool's is about 0.25. From Python 3.12 a bare task holds less (1,109 to 1,139 bytes on
#: 3.13, against 1,204 on 3.11) while the job's extra stays about 1,190 bytes: 1.05 to
#: 1.10 of a bare task there, so the share allowed is a tenth more.
EXTRA_SHARE = 1.1 if sys.version_info < (3, 12) else 1.2


async def _bytes_per_task(
    start: Callable[[], list[asyncio.Task[Any]]],
    ready: Callable[[], Awaitable[object]],
    release: asyncio.Event,
) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tasks = start()
        await ready()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    release.set()
    await asyncio.gather(*tasks)
    release.clear()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / RUNNING


@pytest.mark.skipif(tracemalloc.is_tracing(), reason="tracemalloc is already tracing")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_running_job_holds_at_most_a_bare_tasks_worth_more(anyio_backend: str) -> None:
    release, all_waiting = asyncio.Event(), asyncio.Event()
    waiting_now = 0

    async def waiting(_: object) -> None:
        nonlocal waiting_now
        waiting_now += 1
        if waiting_now == RUNNING:
            all_waiting.set()
        await release.wait()

    bare = await _bytes_per_task(
        lambda: [asyncio.create_task(waiting(i)) for i in range(RUNNING)],
        all_waiting.wait,
        release,
    )
    waiting_now = 0
    config = PoolConfig(
        backend="coroutine",
        entrypoint=waiting,
        idle_executors=RUNNING,
        max_executors=RUNNING,
        max_concurrent_initializations=RUNNING,
        max_pending=None,
        backend_options={"loop_lag_warn": None},
    )
    async with open_pool(config) as pool:
        await pool.wait_until(lambda s: s.idle >= RUNNING)
        job = await _bytes_per_task(
            lambda: [asyncio.create_task(pool.run(i)) for i in range(RUNNING)],
            lambda: pool.wait_until(lambda s: s.busy >= RUNNING),
            release,
        )
    extra = job - bare
    assert extra <= EXTRA_SHARE * bare, (
        f"a running job holds {job:.0f} bytes, {extra:.0f} more than a bare task's "
        f"{bare:.0f} ({extra / bare:.2f} times a bare task)"
    )
