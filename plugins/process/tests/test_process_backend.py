"""The process backend with real worker processes."""

from __future__ import annotations

import os

import pytest

from executors import open_pool

pytestmark = pytest.mark.anyio


async def test_jobs_run_in_worker_processes() -> None:
    async with open_pool(
        backend="process", entrypoint="process_jobs:pid", idle_executors=2, max_executors=2
    ) as pool:
        pids = {await pool.run(None) for _ in range(4)}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2
