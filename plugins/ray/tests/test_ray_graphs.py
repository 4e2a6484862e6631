"""What the compiled-graph path (``compiled_graphs = true``) adds to the backend's own:
each executor's graph thread, and how it ends. The rest of the backend's promises are
checked on both paths (test_ray_backend.py, the conformance suite, the cluster tests)."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from ray_helpers import GONE_WITHIN

from executors import FailureReason, JobFailed, PoolConfig, open_pool
from executors_ray._graph import JobGraph

WAIT = 60.0


def _graph_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("executors-ray-graph-")]


def _no_graph_thread_within(seconds: float) -> list[threading.Thread]:
    """Joins the graph threads, ``seconds`` for them all: those still alive after."""
    deadline = time.monotonic() + seconds
    for thread in _graph_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    return _graph_threads()


class NoJobs:
    """An actor without the method a graph is compiled from."""

    def ready(self) -> bool:
        return True


def test_a_graph_ray_cannot_compile_says_why_and_its_thread_ends() -> None:
    import ray

    remote: Any = ray.remote(NoJobs)
    actor = remote.remote()
    try:
        assert ray.get(actor.ready.remote(), timeout=WAIT)
        graph = JobGraph(actor, "executors-ray-graph-test")
        error = graph.start().exception(timeout=WAIT)
        assert error is not None, "a graph of a method the actor lacks compiled"
        assert "run_packed" in str(error)
        graph.close().result(timeout=WAIT)
    finally:
        ray.kill(actor)
    assert not _no_graph_thread_within(GONE_WITHIN)


@pytest.mark.anyio
async def test_no_graph_thread_is_left_once_the_pool_is_closed() -> None:
    # a job that ends, one that times out (its executor killed mid-job), one that
    # crashes its actor: each executor's thread ends with its graph
    config = PoolConfig(
        backend="ray",
        idle_executors=2,
        max_executors=2,
        backend_options={"compiled_graphs": True},
    )
    async with open_pool(config) as pool:
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= 2)
            assert len(_graph_threads()) == 2
            assert await pool.call(sum, [1, 2, 3]) == 6
            with pytest.raises(JobFailed) as timed_out:
                await pool.run(pool.call_payload(time.sleep, (60,), {}), timeout=0.5)
            assert timed_out.value.outcome.reason is FailureReason.TIMED_OUT
            with pytest.raises(JobFailed) as crashed:
                await pool.call(_exit)
            assert crashed.value.outcome.reason is FailureReason.CRASHED
            await pool.wait_until(lambda s: s.idle >= 2)
    left = await anyio.to_thread.run_sync(_no_graph_thread_within, GONE_WITHIN)
    assert not left, f"graph threads left {GONE_WITHIN}s after the pool closed: {left}"


def _exit() -> None:
    import os

    os._exit(3)
