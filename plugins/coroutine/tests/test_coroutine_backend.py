"""The coroutine backend with real tasks, under asyncio and trio hosts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.lowlevel
import coroutine_jobs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executors import (
    AcquireError,
    ConfigError,
    EntrypointError,
    FailureReason,
    Job,
    JobFailed,
    JobOutcome,
    JobStatus,
    PoolConfig,
    hookimpl,
    open_pool,
)
from executors.testing import Script
from executors.testing._program import Step, play_program
from executors.testing.strategies import check_invariants, programs, scripts
from executors_coroutine import CoroutineBackend, CoroutineOptions

pytestmark = pytest.mark.anyio


def config(**overrides: Any) -> PoolConfig:
    base: dict[str, Any] = {
        "backend": "coroutine",
        "entrypoint": "executors.testing:scripted",
        "idle_executors": 2,
        "max_executors": 4,
        "close_timeout": 1.0,
        "drain_timeout": 5.0,
    }
    base.update(overrides)
    return PoolConfig(**base)


async def test_runs_jobs_and_shares_the_setup_state_once_per_pool() -> None:
    coroutine_jobs.SETUP_CALLS.clear()
    cfg = config(
        entrypoint=coroutine_jobs.state,
        setup=coroutine_jobs.counting_setup,
    )
    async with open_pool(cfg) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        states = [await pool.run(None) for _ in range(5)]
    assert states == [{"calls": 1}] * 5
    assert coroutine_jobs.SETUP_CALLS == [1]


async def test_invariant_1_a_raising_job_never_disturbs_its_siblings() -> None:
    payloads = ["a", "raise", "b", "raise", "c"]
    async with open_pool(config(entrypoint=coroutine_jobs.sometimes_raise)) as pool:
        handles = [await pool.submit(p) for p in payloads]
        outcomes = [await h.outcome() for h in handles]
        with pytest.raises(JobFailed, match="bad payload") as info:
            await pool.run("raise")
        assert info.value.outcome.reason is FailureReason.RAISED
    assert [o.status for o in outcomes] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    ]
    failed = outcomes[1]
    assert failed.reason is FailureReason.RAISED
    assert failed.error is not None
    assert failed.error.type_name == "ValueError"
    assert "bad payload" in failed.error.traceback
    assert isinstance(failed.error.exception, ValueError)


async def test_invariant_4_cancelling_a_running_job_ends_it_cancelled_and_frees_the_slot() -> None:
    release = anyio.Event()
    async with open_pool(config(entrypoint=coroutine_jobs.wait_for_release)) as pool:
        handle = await pool.submit(release)
        await pool.wait_until(lambda s: s.busy == 1)
        handle.cancel()
        outcome = await handle.outcome()
        assert outcome.status is JobStatus.CANCELLED
        stats = await pool.wait_until(lambda s: s.busy == 0)
        assert stats.jobs_cancelled == 1
        release.set()
        assert await pool.run(release) == "released"


async def test_job_timeout_cancels_the_task() -> None:
    async with open_pool(config(job_timeout=0.05)) as pool:
        outcome = await (await pool.submit(Script.hang())).outcome()
    assert outcome.status is JobStatus.TIMED_OUT


async def test_a_run_whose_caller_is_cancelled_ends_cancelled_and_keeps_its_executor() -> None:
    # The job runs in its caller's task, with no cancel scope of the pool's or the
    # executor's: the caller's cancellation reaches it directly and is not swallowed.
    release = anyio.Event()
    closed: list[str] = []

    class Closes:
        @hookimpl
        def executors_executor_closed(self, reason: str) -> None:
            closed.append(reason)

    cfg = config(entrypoint=coroutine_jobs.wait_for_release, idle_executors=1, max_executors=1)
    async with open_pool(cfg, observers=[Closes()]) as pool:
        await pool.wait_until(lambda s: s.idle == 1)
        with anyio.move_on_after(0.05) as caller:
            await pool.run(release)
        assert caller.cancelled_caught
        stats = await pool.wait_until(lambda s: s.idle == 1)
        assert stats.jobs_cancelled == 1
        release.set()
        assert await pool.run(release) == "released"
        assert closed == [], "the cancelled job's executor was closed"
        assert pool.statistics().executors_started == 1


async def test_invariant_9_a_drain_kills_a_run_without_timeout_and_its_caller_goes_on() -> None:
    # Such a run holds no cancel scope of the pool's: the end of the drain kills its
    # executor, and the kill (a Task.cancel() on asyncio) is taken back from the caller.
    release = anyio.Event()
    async with open_pool(config(entrypoint=coroutine_jobs.wait_for_release)) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.drain, 0.05)
            with anyio.fail_after(5), pytest.raises(JobFailed) as info:
                await pool.run(release)
        await anyio.lowlevel.checkpoint()  # cancelled here if the kill's cancellation were left
    assert info.value.outcome.reason is FailureReason.POOL_CLOSED
    assert info.value.outcome.status is JobStatus.CANCELLED


async def test_invariant_3_every_setup_raising_gives_acquire_error_with_the_setup_error() -> None:
    cfg = config(
        setup=coroutine_jobs.broken_setup,
        idle_executors=1,
        acquire_attempts=2,
        spawn_backoff=0.01,
        spawn_backoff_max=0.02,
    )
    async with open_pool(cfg) as pool:
        with pytest.raises(AcquireError, match="model weights not found") as info:
            await pool.run(Script.succeed(1))
    assert isinstance(info.value.__cause__, OSError)


async def test_a_sync_entrypoint_is_refused_with_a_clear_error() -> None:
    with pytest.raises(EntrypointError, match="is a sync function, but backend 'coroutine'"):
        async with open_pool(config(entrypoint=coroutine_jobs.sync_job)):
            pass


async def test_kill_cancels_the_running_job_without_waiting() -> None:
    backend = CoroutineBackend()
    started, release = anyio.Event(), anyio.Event()
    cfg = config(entrypoint=coroutine_jobs.signal_then_wait)
    async with backend.open(cfg, CoroutineOptions()) as factory:
        executor = factory.create_executor("ex-1")
        await executor.start()
        outcomes = []

        async def run() -> None:
            outcomes.append(await executor.run_job(Job("job-1", (started, release))))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await started.wait()  # the job is running: kill it, never releasing it
            await executor.kill()
        assert outcomes[0].reason is FailureReason.KILLED
        assert not executor.health().alive


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        (coroutine_jobs.signal_then_wait, "KILLED"),
        (coroutine_jobs.swallow_cancellation, "swallowed"),
    ],
    ids=["killed", "swallowed"],
)
async def test_a_killed_run_leaves_no_cancellation_in_its_task(
    anyio_backend: str, entrypoint: object, expected: str
) -> None:
    # On asyncio a kill cancels the job's task itself: the run must take that back, or
    # the caller's next await would be cancelled instead.
    started, release = anyio.Event(), anyio.Event()
    async with CoroutineBackend().open(
        config(entrypoint=entrypoint), CoroutineOptions()
    ) as factory:
        executor = factory.create_executor("ex-1")
        await executor.start()

        async def run() -> tuple[JobOutcome, int]:
            outcome = await executor.run_job(Job("job-1", (started, release)))
            await asyncio.sleep(0)  # cancelled here if the kill's cancellation were left
            task = asyncio.current_task()
            assert task is not None
            return outcome, task.cancelling()

        task = asyncio.create_task(run())
        await started.wait()
        await executor.kill()
        outcome, cancelling = await task
    assert cancelling == 0
    if expected == "KILLED":
        assert outcome.reason is FailureReason.KILLED
    else:
        assert outcome.value == expected


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kill_first", [True, False])
async def test_a_kill_never_swallows_its_callers_own_cancellation(
    anyio_backend: str, kill_first: bool
) -> None:
    # The caller is cancelled in the same loop iteration as the kill: asyncio raises one
    # CancelledError for both, and it must reach the caller, not end as KILLED.
    started, release = anyio.Event(), anyio.Event()
    cfg = config(entrypoint=coroutine_jobs.signal_then_wait)
    async with CoroutineBackend().open(cfg, CoroutineOptions()) as factory:
        executor = factory.create_executor("ex-1")
        await executor.start()
        task = asyncio.create_task(executor.run_job(Job("job-1", (started, release))))
        await started.wait()
        if kill_first:
            await executor.kill()
            task.cancel()
        else:
            task.cancel()
            await executor.kill()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelling() == 1  # the caller's own request, not taken back


task_programs = programs(
    scripts(seconds=[0.0, 0.001, 0.01]), wait_seconds=[0.0, 0.005], max_size=15
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(program=task_programs, drain_timeout=st.sampled_from([0.0, 0.02]))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
async def test_invariants_1_2_5_6_9_10_hold_with_real_tasks(
    anyio_backend: str, program: list[Step], drain_timeout: float
) -> None:
    cfg = config(drain_timeout=drain_timeout, close_timeout=0.5, job_timeout=1.0)
    result = await play_program(cfg, program)
    check_invariants(result, margin=1.0)


async def test_the_loop_lag_watchdog_names_the_job_that_blocked_the_loop() -> None:
    cfg = config(
        entrypoint=coroutine_jobs.block_the_loop,
        backend_options={"loop_lag_warn": 0.1, "loop_lag_interval": 0.02},
    )
    reported = anyio.Event()
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            reported.set()

    handler = Catch(logging.WARNING)
    logging.getLogger("executors.coroutine").addHandler(handler)
    try:
        async with open_pool(cfg) as pool:
            await pool.wait_until(lambda s: s.idle == 2)
            job_id = await pool.run(0.3)
            # the watchdog wakes late, then reports: wait for its report
            with anyio.fail_after(5):
                await reported.wait()
    finally:
        logging.getLogger("executors.coroutine").removeHandler(handler)
    message = records[0].getMessage()
    assert "event loop was blocked" in message
    assert f"{job_id} on " in message


async def test_invalid_coroutine_options_name_the_option() -> None:
    with pytest.raises(ConfigError, match="loop_lag_warn"):
        async with open_pool(config(backend_options={"loop_lag_warn": -1})):
            pass


def test_a_loop_lag_warning_names_ten_jobs_and_counts_the_rest() -> None:
    # With thousands of jobs running when the loop was blocked, the warning stays one
    # readable line.
    from executors_coroutine._backend import _named

    text = _named({f"pool1-job-{i}": f"pool1-{i}" for i in range(5000)})
    assert text.startswith("pool1-job-0 on pool1-0, pool1-job-1 on pool1-1, ")
    assert text.endswith(", pool1-job-9 on pool1-9, and 4990 more")
    assert _named({}) == "none"
