"""The ray backend from synchronous code: the concurrent.futures executor, and a pool
that cannot reach its cluster (in a process of its own)."""

from __future__ import annotations

import concurrent.futures as cf
import operator
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from executors import PoolExecutor

if TYPE_CHECKING:
    from pathlib import Path

WAIT = 60.0


def test_the_futures_executor_runs_calls_on_ray() -> None:
    with PoolExecutor(max_workers=2, backend="ray", idle_executors=2) as executor:
        assert executor.submit(operator.add, 2, 3).result(WAIT) == 5
        assert list(executor.map(abs, range(-20, 0), chunksize=3, timeout=WAIT)) == list(
            range(20, 0, -1)
        )
        # cancel() of a running call ends its actor; the pool serves on
        running = executor.submit(time.sleep, 60)
        deadline = time.monotonic() + WAIT
        while not running.running():
            assert time.monotonic() < deadline, "the call did not start"
            time.sleep(0.01)
        assert running.cancel()
        with pytest.raises(cf.CancelledError):
            running.result(WAIT)
        assert executor.submit(operator.mul, 6, 7).result(WAIT) == 42


def test_a_cluster_that_does_not_answer_fails_the_pool_within_connect_timeout(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import anyio
        from executors import ConfigError, PoolConfig, open_pool

        async def main():
            options = {"address": "127.0.0.1:9", "connect_timeout": 2.0}
            try:
                async with open_pool(PoolConfig(backend="ray", backend_options=options)):
                    pass
            except ConfigError as exc:
                print("ConfigError:", exc)

        anyio.run(main)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=tmp_path,
        check=False,
    )
    took = time.monotonic() - started
    assert "ConfigError: backend 'ray' could not connect to 127.0.0.1:9" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "connect_timeout (2.0s)" in done.stdout
    assert took < WAIT


def test_after_ray_shutdown_the_next_pool_starts_a_ray_again(tmp_path: Path) -> None:
    # The backend starts a Ray of its own for the first pool; the application shuts it
    # down; the next pool starts another, rather than using a connection that is gone
    # (Ray would then start one by itself at the first actor, joining RAY_ADDRESS: the
    # address of no cluster here).
    script = textwrap.dedent(
        """
        import operator

        import anyio
        import ray

        from executors import open_pool

        async def one_call():
            async with open_pool(backend="ray", idle_executors=1) as pool:
                return await pool.call(operator.add, 1, 2)

        print("first", anyio.run(one_call))
        ray.shutdown()
        print("again", anyio.run(one_call))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=2 * WAIT,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:9"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["first", "3", "again", "3"], done.stdout + done.stderr[-3000:]
