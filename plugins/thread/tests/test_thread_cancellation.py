"""Stopping jobs in real threads: cooperative cancellation of sync jobs, cancel scopes for
async jobs, timeouts, abandonment of jobs that ignore both, and drains."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.lowlevel
import pytest
import sniffio
from thread_helpers import (
    PATIENCE,
    THREAD_PREFIX,
    Closes,
    config,
    executor_threads,
    release_and_join,
    started,
    thread_of,
    wait_closed,
)
from thread_jobs import Probe

from executors import FailureReason, JobFailed, JobOutcome, JobStatus, Pool, PoolConfig, open_pool
from executors.testing._program import Recorder

pytestmark = pytest.mark.anyio


async def cancel_and_run_the_next_job(cfg: PoolConfig) -> threading.Thread:
    """Cancel a job (payload: a :class:`Probe`) once it runs, then run the next one:
    check that the first ended cancelled and the next ran on the same thread (the pool
    started no other); return that thread."""
    probe = Probe()
    async with open_pool(cfg) as pool:
        handle = await pool.submit(probe)
        thread = await started(probe)
        handle.cancel()
        with anyio.fail_after(PATIENCE):
            outcome = await handle.outcome()
        next_thread = await pool.run(None)
        stats = pool.statistics()
    assert outcome.status is JobStatus.CANCELLED
    assert outcome.reason is FailureReason.CANCELLED
    assert next_thread == thread.name
    assert stats.executors_started == 1
    return thread


async def test_a_sync_job_polling_cancel_requested_ends_cancelled_and_its_thread_serves_on() -> (
    None
):
    thread = await cancel_and_run_the_next_job(config(entrypoint="thread_jobs:poll_cancel"))
    thread.join(PATIENCE)  # the pool closed it: it ends
    assert not thread.is_alive()


async def test_a_sync_job_ignoring_cancellation_times_out_once_and_is_abandoned() -> None:
    recorder, closes = Recorder(), Closes()
    probe = Probe()
    cfg = config(entrypoint="thread_jobs:ignore_cancel", job_timeout=0.1, close_timeout=0.2)
    try:
        async with open_pool(cfg, observers=[recorder, closes]) as pool:
            handle = await pool.submit(probe)
            abandoned = await started(probe)
            with anyio.fail_after(PATIENCE):
                outcome = await handle.outcome()
            assert outcome.executor_id is not None
            reason = await wait_closed(pool, closes, outcome.executor_id)
            # The pool replaced the slot; the next job runs on a fresh thread.
            with anyio.fail_after(PATIENCE):
                next_thread = await pool.run(None)
            stats = pool.statistics()
            assert abandoned.is_alive()  # still blocked: a thread cannot be killed
        assert abandoned.daemon  # so it never holds up interpreter exit
    finally:
        release_and_join(probe)
    assert outcome.status is JobStatus.TIMED_OUT
    assert outcome.reason is FailureReason.TIMED_OUT
    assert recorder.finished[handle.id] == 1
    assert reason == "abandoned"
    assert abandoned.name == thread_of(outcome.executor_id)
    assert next_thread not in (abandoned.name, None)
    assert stats.executors_started == 2
    assert stats.jobs_timed_out == 1


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
async def test_cancelling_an_async_job_cancels_it_on_its_threads_loop_and_reuses_the_thread(
    loop: str,
) -> None:
    cfg = config(entrypoint="thread_jobs:await_forever", backend_options={"loop": loop})
    await cancel_and_run_the_next_job(cfg)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
async def test_an_async_job_past_job_timeout_ends_timed_out_and_the_thread_is_reused(
    loop: str,
) -> None:
    probe = Probe()
    cfg = config(
        entrypoint="thread_jobs:await_forever", job_timeout=0.05, backend_options={"loop": loop}
    )
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            outcome = await (await pool.submit(probe)).outcome()
        next_thread = await pool.run(None)
        stats = pool.statistics()
    assert outcome.status is JobStatus.TIMED_OUT
    assert outcome.reason is FailureReason.TIMED_OUT
    assert probe.thread is not None
    assert next_thread == probe.thread.name
    assert stats.executors_started == 1


async def test_invariant_9_drain_lets_busy_threads_finish_and_abandons_a_stuck_one() -> None:
    drain_timeout, close_timeout = 0.3, 0.3
    closes = Closes()
    finishing, stuck = [Probe(), Probe()], Probe()
    cfg = config(
        entrypoint="thread_jobs:ignore_cancel",
        idle_executors=3,
        max_executors=3,
        drain_timeout=drain_timeout,
        close_timeout=close_timeout,
    )
    try:
        async with open_pool(cfg, observers=[closes]) as pool:
            handles = [await pool.submit(probe) for probe in [*finishing, stuck]]
            for probe in [*finishing, stuck]:
                await started(probe)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.drain)
                start = anyio.current_time()
                # Draining: the running jobs may still finish.
                await pool.wait_until(lambda s: s.draining)
                for probe in finishing:
                    probe.release.set()
            took = anyio.current_time() - start
            outcomes = [await handle.outcome() for handle in handles]
        assert stuck.thread is not None
        assert stuck.thread.is_alive()
    finally:
        release_and_join(*finishing, stuck)
    assert [o.status for o in outcomes[:2]] == [JobStatus.SUCCEEDED] * 2
    assert outcomes[2].status is JobStatus.CANCELLED
    assert outcomes[2].reason is FailureReason.POOL_CLOSED
    assert closes.abandoned() == {outcomes[2].executor_id}
    # a margin for a loaded machine; the stuck job alone holds the drain
    assert took <= drain_timeout + close_timeout + 2.0


async def run_until_the_drain_ends(pool: Pool, probe: Probe) -> JobOutcome:
    """Runs ``probe``'s job with ``run()``; its outcome once the drain's end stopped it."""
    with pytest.raises(JobFailed) as failed:
        await pool.run(probe)
    # The caller carries on: the pool's cancellation ended the job, not this task.
    await anyio.lowlevel.checkpoint()
    if sniffio.current_async_library() == "asyncio":
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0, "the pool's cancellation of the caller was taken back"
    return failed.value.outcome


async def test_invariant_9_the_drains_end_stops_a_run_job_and_its_caller_carries_on() -> None:
    # A run() job without a timeout holds no cancel scope: the drain's end kills its
    # executor, which asks the job to stop and gives the thread up at once (a thread
    # cannot be killed). The job ends POOL_CLOSED, its caller carries on, and the thread
    # ends once the job sees the request.
    closes, probe = Closes(), Probe()
    cfg = config(entrypoint="thread_jobs:poll_cancel", drain_timeout=0.1, close_timeout=PATIENCE)
    async with open_pool(cfg, observers=[closes]) as pool, anyio.create_task_group() as tg:
        outcomes: list[JobOutcome] = []

        async def caller() -> None:
            outcomes.append(await run_until_the_drain_ends(pool, probe))

        tg.start_soon(caller)
        thread = await started(probe)
        await pool.drain()
    (outcome,) = outcomes
    assert outcome.status is JobStatus.CANCELLED
    assert outcome.reason is FailureReason.POOL_CLOSED
    assert closes.abandoned() == {outcome.executor_id}
    thread.join(PATIENCE)
    assert not thread.is_alive(), "the job was not asked to stop"


async def test_invariant_10_after_the_pool_closes_only_reported_abandoned_threads_live() -> None:
    closes = Closes()
    stuck = Probe()
    cfg = config(
        entrypoint="thread_jobs:ignore_cancel",
        idle_executors=3,
        max_executors=4,
        close_timeout=0.2,
    )
    try:
        async with open_pool(cfg, observers=[closes]) as pool:
            await pool.wait_until(lambda s: s.idle == 3)
            outcome = await (await pool.submit(stuck, timeout=0.05)).outcome()
            assert outcome.executor_id is not None
            await wait_closed(pool, closes, outcome.executor_id)
            names = [await pool.run(None) for _ in range(4)]
        started_executors = pool.statistics().executors_started
        alive = {thread.name for thread in executor_threads()}
        abandoned = {thread_of(executor) for executor in closes.abandoned()}
    finally:
        release_and_join(stuck)
    assert outcome.status is JobStatus.TIMED_OUT
    assert names
    assert len(closes.reasons) == started_executors  # every executor reported closed
    assert alive == abandoned == {thread_of(outcome.executor_id)}
    assert not any(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate())


class Stop(Exception):
    pass


async def test_invariant_9_leaving_the_block_at_once_stops_threads_still_starting() -> None:
    """A pool left with an error cancels the starts under way; their threads, which may not
    even run their loop yet, must end without the pool waiting close_timeout for them."""
    cfg = config(idle_executors=4, max_executors=4, max_concurrent_initializations=4)
    cfg = cfg.evolve(close_timeout=10.0)
    for _ in range(20):
        start = anyio.current_time()
        with pytest.raises(Stop):
            async with open_pool(cfg):
                raise Stop
        assert anyio.current_time() - start < cfg.close_timeout
        assert not list(executor_threads())
