"""How the threads report outcomes to an asyncio host: through one eventfd per pool that
the host's loop watches (where ``os.eventfd`` exists), else through the loop's own
``call_soon_threadsafe``; on trio, through ``run_sync_soon``. Either way every outcome
arrives, and a thread that reports once the pool has gone writes nowhere."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from thread_helpers import PATIENCE, config

from executors import Job, JobOutcome, JobStatus, open_pool
from executors_thread import ThreadBackend, ThreadExecutor, ThreadOptions
from executors_thread._backend import _Outcomes, _Run

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio
needs_eventfd = pytest.mark.skipif(not hasattr(os, "eventfd"), reason="needs os.eventfd")


class CountsThreadsafeCalls:
    """Counts the calls of the running asyncio loop's ``call_soon_threadsafe`` made by
    executor threads (the pool's own host-side calls are not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe
        self.from_threads = 0
        host = threading.get_ident()

        def counting(callback: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != host:
                self.from_threads += 1
            return original(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", counting)


async def run_jobs(jobs: int) -> list[str]:
    cfg = config(idle_executors=2, max_executors=2)
    async with open_pool(cfg) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        async with anyio.create_task_group() as tg:
            names: list[str] = []

            async def one() -> None:
                names.append(await pool.run(None))

            for _ in range(jobs):
                tg.start_soon(one)
        return names


@needs_eventfd
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_asyncio_outcomes_come_through_the_eventfd_not_the_loops_self_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = CountsThreadsafeCalls(monkeypatch)
    names = await run_jobs(40)
    assert len(names) == 40
    assert all(name.startswith("executors-thread-") for name in names)
    # the threads' start and stop still go through the loop (four calls each at most)
    assert counts.from_threads <= 8, counts.from_threads


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_without_eventfd_outcomes_come_through_call_soon_threadsafe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if hasattr(os, "eventfd"):
        monkeypatch.delattr(os, "eventfd")
    counts = CountsThreadsafeCalls(monkeypatch)
    names = await run_jobs(40)
    assert len(names) == 40
    assert counts.from_threads >= 40


@needs_eventfd
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_outcomes_reported_from_many_threads_are_all_settled() -> None:
    outcomes = _Outcomes.on_this_loop()
    assert outcomes is not None
    runs = [_Run(Job(id=f"job-{i}", payload=i), f"job-{i}") for i in range(50)]
    for run in runs:
        run.done = anyio.Event()
    try:

        def report_all(part: list[_Run]) -> None:
            for run in part:
                assert run.job is not None
                outcomes.report(run, JobOutcome.success(run.job_id, run.job.payload))

        threads = [threading.Thread(target=report_all, args=(runs[i::5],)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with anyio.fail_after(5):
            for run in runs:
                await run.done.wait()
    finally:
        outcomes.close()
    assert [None if run.outcome is None else run.outcome.value for run in runs] == list(range(50))


@needs_eventfd
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_report_after_the_pool_closed_its_channel_writes_nowhere() -> None:
    outcomes = _Outcomes.on_this_loop()
    assert outcomes is not None
    fd = outcomes._fd
    outcomes.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    # A number that a new file may now reuse: a late report must not write to it.
    reused_r, reused_w = os.pipe()
    try:
        run = _Run(Job(id="late", payload=None), "late")
        run.done = anyio.Event()
        reporter = threading.Thread(
            target=outcomes.report, args=(run, JobOutcome.success("late", None))
        )
        reporter.start()
        reporter.join()
        os.set_blocking(reused_r, False)
        with pytest.raises(BlockingIOError):
            os.read(reused_r, 8)
        # nor is it kept: nobody will settle it
        assert not outcomes._reported
        assert run.outcome is None
    finally:
        os.close(reused_r)
        os.close(reused_w)


class Payload:
    """A payload that can be watched with a weak reference."""


@pytest.mark.parametrize("entrypoint", ["thread_jobs:thread_name", "thread_jobs:which_loop"])
async def test_a_thread_slow_to_let_go_of_its_run_holds_none_of_the_jobs_payload(
    entrypoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a job's outcome has reached the host, its payload is the caller's alone, even
    while the thread that reported it still holds its run (it lets go only as it takes
    the next job): here each report waits until the host has looked."""
    looked = threading.Event()
    report = ThreadExecutor._report

    def report_then_linger(self: ThreadExecutor, run: _Run, outcome: JobOutcome) -> None:
        report(self, run, outcome)
        looked.wait(PATIENCE)

    monkeypatch.setattr(ThreadExecutor, "_report", report_then_linger)
    async with ThreadBackend().open(config(entrypoint=entrypoint), ThreadOptions()) as factory:
        executor = factory.create_executor("ex-1")
        await executor.start()
        try:
            job = Job("job-1", Payload())
            payload = weakref.ref(job.payload)
            running = executor.run_job(job)
            del job
            gc.disable()  # only a reference cycle could keep the payload now
            try:
                with anyio.fail_after(PATIENCE):
                    outcome = await running
                held = payload() is not None
            finally:
                gc.enable()
        finally:
            looked.set()
            await executor.aclose()
    assert outcome.status is JobStatus.SUCCEEDED, outcome
    assert not held, "the job's payload is still held once its outcome came"
