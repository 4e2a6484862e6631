"""The thread backend with real threads, under asyncio and trio hosts: jobs, errors,
setup per thread, the per-thread event loop, options and health."""

from __future__ import annotations

import threading
from typing import Any, Literal

import anyio
import pytest
import thread_jobs
from thread_helpers import (
    PATIENCE,
    THREAD_PREFIX,
    Closes,
    config,
    release_and_join,
    started,
    until,
)
from thread_jobs import Probe, SetupFailed

from executors import AcquireError, ConfigError, FailureReason, Job, JobFailed, JobStatus, open_pool
from executors_thread import ThreadBackend, ThreadExecutor, ThreadOptions

pytestmark = pytest.mark.anyio


async def test_jobs_run_in_the_executor_thread_not_the_host_thread() -> None:
    async with open_pool(config()) as pool:
        name = await pool.run(None)
    assert name.startswith(THREAD_PREFIX)
    assert name != threading.current_thread().name


@pytest.mark.parametrize(
    "entrypoint", ["thread_jobs:raise_payload", "thread_jobs:async_raise_payload"]
)
async def test_invariant_1_a_raising_job_fails_raised_with_its_exception_and_the_pool_keeps_serving(
    entrypoint: str,
) -> None:
    error = ValueError("bad payload")
    async with open_pool(config(entrypoint=entrypoint)) as pool:
        outcome = await (await pool.submit(error)).outcome()
        with pytest.raises(JobFailed, match=r"KeyError: 'again'") as info:
            await pool.run(KeyError("again"))
        assert await pool.run("fine") == "fine"
        stats = pool.statistics()
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is FailureReason.RAISED
    assert outcome.error is not None
    assert outcome.error.exception is error  # the job's own exception object, not a copy
    assert outcome.error.type_name == "ValueError"
    assert "raise ctx.payload" in outcome.error.traceback
    assert isinstance(info.value.__cause__, KeyError)
    assert stats.executors_started == 1  # the failing jobs did not cost their executor


@pytest.mark.parametrize("entrypoint", ["thread_jobs:exit_or_echo", "thread_jobs:aexit_or_echo"])
async def test_a_job_raising_system_exit_fails_raised_and_its_thread_serves_on(
    entrypoint: str,
) -> None:
    # SystemExit raised by a job's code would end the executor's thread, and the job
    # would wait for an outcome forever.
    async with open_pool(config(entrypoint=entrypoint, max_executors=1)) as pool:
        with anyio.fail_after(PATIENCE):
            outcome = await (await pool.submit("exit")).outcome()
            assert await pool.run("fine") == "fine"
        stats = pool.statistics()
    assert outcome.reason is FailureReason.RAISED
    assert outcome.error is not None
    assert outcome.error.type_name == "SystemExit"
    assert stats.executors_started == 1


async def test_setup_runs_once_per_thread_and_its_state_reaches_that_threads_jobs() -> None:
    thread_jobs.SETUP_THREADS.clear()
    cfg = config(
        entrypoint="thread_jobs:where_and_state",
        setup="thread_jobs:per_thread_setup",
        idle_executors=2,
        max_executors=2,
    )
    probes = [Probe(), Probe()]
    async with open_pool(cfg) as pool:
        # Two jobs held at once occupy both executors.
        handles = [await pool.submit(probe) for probe in probes]
        for probe in probes:
            await started(probe)
        for probe in probes:
            probe.release.set()
        held = [(await handle.outcome()).value for handle in handles]
        later = [await pool.run(None) for _ in range(6)]
    runs: list[tuple[str, dict[str, str]]] = held + later
    for thread, state in runs:
        assert state == {"loaded_in": thread}  # the state of the setup of that very thread
    assert len({thread for thread, _ in held}) == 2
    assert sorted(thread_jobs.SETUP_THREADS) == sorted({thread for thread, _ in runs})
    assert len(thread_jobs.SETUP_THREADS) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("thread_jobs:broken_setup", "model weights not found"),
        ("thread_jobs:broken_async_setup", "async model weights not found"),
    ],
)
async def test_invariant_3_a_raising_setup_gives_acquire_error_caused_by_its_exception(
    setup: str, message: str
) -> None:
    cfg = config(setup=setup, acquire_attempts=2)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run(None)
    cause = info.value.__cause__
    assert isinstance(cause, SetupFailed)
    assert str(cause) == message
    assert info.value.outcome.reason is FailureReason.ACQUIRE_FAILED


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
async def test_async_jobs_run_on_the_loop_option_in_the_executor_thread(loop: str) -> None:
    cfg = config(entrypoint="thread_jobs:which_loop", backend_options={"loop": loop})
    async with open_pool(cfg) as pool:
        library, thread = await pool.run(None)
    assert library == loop
    assert thread.startswith(THREAD_PREFIX)


async def test_the_loop_option_defaults_to_asyncio() -> None:
    async with open_pool(config(entrypoint="thread_jobs:which_loop")) as pool:
        library, _ = await pool.run(None)
    assert library == "asyncio"
    assert ThreadOptions().loop == "asyncio"


async def test_an_invalid_loop_option_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match=r"thread\.loop = 'curio' is invalid") as info:
        async with open_pool(config(backend_options={"loop": "curio"})):
            pass
    assert "'asyncio' or 'trio'" in str(info.value)


async def test_a_long_sync_job_is_not_reported_unresponsive() -> None:
    """Pings are not measured while a sync job holds its thread: long sync jobs are
    normal for threads, and the supervisor must not kill them."""
    closes = Closes()
    cfg = config(entrypoint="thread_jobs:ignore_cancel", ping_interval=0.01, ping_timeout=0.05)
    probe = Probe()
    try:
        async with open_pool(cfg, observers=[closes]) as pool:
            handle = await pool.submit(probe)
            await started(probe)
            rounds = closes.supervision_rounds
            # Supervision rounds that last many times ping_timeout in all pass meanwhile.
            await until(lambda: closes.supervision_rounds >= rounds + 20)
            probe.release.set()
            outcome = await handle.outcome()
    finally:
        release_and_join(probe)
    assert outcome.status is JobStatus.SUCCEEDED
    assert outcome.executor_id is not None
    assert set(closes.reasons) == {outcome.executor_id}  # never replaced
    assert closes.reasons[outcome.executor_id] not in ("unresponsive", "abandoned")


async def test_pings_go_through_the_threads_loop_except_during_a_sync_job() -> None:
    cfg = config(entrypoint="thread_jobs:ignore_cancel")
    async with ThreadBackend().open(cfg, ThreadOptions()) as factory:
        executor = factory.create_executor("ex-1")
        await executor.start()
        try:
            assert executor.health().ping_latency is None  # sends the first ping
            latency = executor.health().ping_latency
            assert latency is not None
            assert latency >= 0
            probe = Probe()
            async with anyio.create_task_group() as tg:
                tg.start_soon(executor.run_job, Job("job-1", probe))
                await started(probe)
                health = executor.health()
                assert health.alive
                assert health.ping_latency is None
                probe.release.set()
        finally:
            await executor.aclose()
        # closed means gone: the thread has ended by the time aclose() returns
        assert not executor.health().alive
        assert probe.thread is not None
        assert not probe.thread.is_alive()


async def test_a_thread_that_takes_its_job_before_the_host_made_its_context_makes_it() -> None:
    """run_job makes a job's JobContext once the job is on its way, while the thread
    wakes up. A thread that runs the job first makes the same context itself: here the
    host is held, releasing the interpreter lock, until the job has started."""
    cfg = config(entrypoint="thread_jobs:context_seen", setup="thread_jobs:per_thread_setup")
    async with ThreadBackend().open(cfg, ThreadOptions()) as factory:
        executor = factory.create_executor("ex-1")
        assert isinstance(executor, ThreadExecutor)
        await executor.start()
        try:
            probe = Probe()
            make_done = executor._new_done
            ran_first: list[bool] = []

            def after_the_job_started() -> Any:
                ran_first.append(probe.started.wait(PATIENCE))
                return make_done()

            executor._new_done = after_the_job_started
            outcome = await executor.run_job(Job("job-1", probe, metadata={"k": "v"}))
        finally:
            await executor.aclose()
    assert ran_first == [True]
    assert outcome.status is JobStatus.SUCCEEDED, outcome
    job_id, executor_id, state, metadata, cancel_requested = outcome.value
    assert (job_id, executor_id, metadata, cancel_requested) == ("job-1", "ex-1", {"k": "v"}, False)
    assert probe.thread is not None
    assert state == {"loaded_in": probe.thread.name}


async def test_an_async_job_blocking_its_threads_loop_ends_unresponsive() -> None:
    closes = Closes()
    cfg = config(entrypoint="thread_jobs:block_the_loop", ping_interval=0.01, ping_timeout=0.1)
    probe = Probe()
    try:
        async with open_pool(cfg, observers=[closes]) as pool:
            handle = await pool.submit(probe)
            await started(probe)
            with anyio.fail_after(PATIENCE):
                outcome = await handle.outcome()
    finally:
        release_and_join(probe)
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is FailureReason.UNRESPONSIVE
    assert outcome.executor_id is not None
    assert closes.reasons[outcome.executor_id] == "abandoned"


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
async def test_a_failed_start_raises_only_once_its_thread_has_ended(
    loop: Literal["asyncio", "trio"],
) -> None:
    """The thread reports a failed setup before its loop has closed. start() waits for
    the rest, so the error reaches the pool with no thread left behind: here the loop's
    teardown is held, and start() has not returned until it is let go."""
    held = thread_jobs.TEARDOWN = Probe()
    cfg = config(setup="thread_jobs:failing_setup_with_a_held_teardown")
    alive_when_raised: list[bool] = []

    async def start(executor: Any) -> None:
        with pytest.raises(SetupFailed, match="a teardown is held"):
            await executor.start()
        assert held.thread is not None
        alive_when_raised.append(held.thread.is_alive())

    async with ThreadBackend().open(cfg, ThreadOptions(loop=loop)) as factory:
        executor = factory.create_executor("ex-1")
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(start, executor)
                # the thread reported its failed start before its teardown began
                assert await anyio.to_thread.run_sync(held.started.wait, PATIENCE)
                await anyio.wait_all_tasks_blocked()
                assert alive_when_raised == []  # start() still waits for the thread
                held.release.set()
        assert alive_when_raised == [False]
        assert not executor.health().alive
        await executor.aclose()  # nothing left to close
