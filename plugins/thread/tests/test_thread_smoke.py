from __future__ import annotations

import threading

import pytest

from executors import open_pool

pytestmark = pytest.mark.anyio


def where(ctx: object) -> str:
    return threading.current_thread().name


async def test_jobs_run_in_executor_threads() -> None:
    async with open_pool(
        backend="thread", entrypoint=where, idle_executors=1, max_executors=1
    ) as pool:
        name = await pool.run(None)
    assert name.startswith("executors-thread-")
