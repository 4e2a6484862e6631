"""Pool.run() hands a job to its executor before the pool's launch bookkeeping, on a
backend that declares ``Capabilities.hands_over_at_once`` (see ``executors._handover``).

The awaitable ``begin`` returns must behave exactly as awaiting ``run_job`` would: the
same value, the same exceptions, the same cancellation, on asyncio and on trio. The pool
must take that path only where it may (a run() job without a timeout and without a cancel
scope, an idle executor and nobody waiting), and every ending of such a launch (a refusal,
a broken run_job, a cancelled caller) must end as it does on the usual path.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from executors import FailureReason, JobFailed, JobStatus, LaunchError, hookimpl, open_pool
from executors._handover import begin
from executors.testing import Script, SimulatedBackend
from tests.test_pool import Recorder, make_config, registry_with, run_virtual, wait_warm

if TYPE_CHECKING:
    from collections.abc import Generator

    from executors import Job, JobOutcome

HOSTS = ["asyncio", "trio"]


# -- begin(): awaiting what it returns is awaiting the coroutine --------------------------


@pytest.mark.parametrize("host", HOSTS)
def test_begin_runs_to_the_first_suspension_at_once_and_the_await_finishes_it(host: str) -> None:
    steps: list[str] = []

    async def run() -> str:
        steps.append("before")
        await anyio.lowlevel.checkpoint()
        steps.append("after one")
        await anyio.lowlevel.checkpoint()
        return "value"

    async def main() -> None:
        running = begin(run())
        assert steps == ["before"], "the first step runs in begin() itself"
        assert await running == "value"
        assert steps == ["before", "after one"]

    anyio.run(main, backend=host)


@pytest.mark.parametrize("host", HOSTS)
def test_what_the_coroutine_returns_or_raises_before_it_suspends_comes_from_the_await(
    host: str,
) -> None:
    async def returns() -> str:
        return "at once"

    async def raises() -> str:
        msg = "refused at once"
        raise LaunchError(msg)

    async def main() -> None:
        assert await begin(returns()) == "at once"
        with pytest.raises(LaunchError, match="refused at once"):
            await begin(raises())

    anyio.run(main, backend=host)


@pytest.mark.parametrize("host", HOSTS)
def test_an_error_after_the_first_suspension_comes_from_the_await(host: str) -> None:
    async def run() -> None:
        await anyio.lowlevel.checkpoint()
        msg = "later"
        raise ValueError(msg)

    async def main() -> None:
        with pytest.raises(ValueError, match="later"):
            await begin(run())

    anyio.run(main, backend=host)


@pytest.mark.parametrize("host", HOSTS)
def test_a_cancellation_reaches_the_coroutine_which_may_clean_up_and_answer(host: str) -> None:
    seen: list[str] = []

    async def run() -> str:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # it may still await while it cleans up
            seen.append("cleaned up")
            raise
        return "never"

    async def main() -> None:
        with anyio.CancelScope() as scope:
            running = begin(run())
            scope.cancel()
            await running
        assert scope.cancelled_caught
        assert seen == ["cancelled", "cleaned up"]

    anyio.run(main, backend=host)


def test_closing_the_awaitable_closes_the_coroutine() -> None:
    closed: list[bool] = []

    @types.coroutine
    def suspend() -> Generator[str, Any, None]:
        yield "suspended"

    async def run() -> None:
        try:
            await suspend()
            await suspend()
        finally:
            closed.append(True)

    running = begin(run())
    assert isinstance(running, types.GeneratorType | types.CoroutineType)
    running.send(None)  # the loop takes what the coroutine yielded first
    running.close()
    assert closed == [True]


# -- the pool hands the job over first where it may --------------------------------------


def hands_over(*, declared: bool = True, **fields: Any) -> SimulatedBackend:
    """A SimulatedBackend whose kills are cheap (no cancel scope for a run() job without a
    timeout), and which says it hands jobs over at once. It may: a job with a Script
    payload runs no job code before run_job first waits."""
    backend = SimulatedBackend(**fields)
    backend.capabilities = attrs.evolve(
        backend.capabilities, cheap_kill=True, hands_over_at_once=declared
    )
    return backend


class RunsAtStart:
    """Records, as each job's ``executors_job_started`` hook is called, how many times
    the backend had begun running it by then."""

    def __init__(self, backend: SimulatedBackend) -> None:
        self.backend = backend
        self.runs: dict[str, int] = {}

    @hookimpl
    def executors_job_started(self, job: Job) -> None:
        self.runs[job.id] = self.backend.runs[job.id]


@pytest.mark.parametrize("declared", [True, False])
def test_a_run_job_is_handed_over_before_the_launch_bookkeeping_only_where_declared(
    declared: bool,
) -> None:
    backend = hands_over(declared=declared)
    seen = RunsAtStart(backend)
    recorder = Recorder()

    async def main() -> None:
        config = make_config(idle_executors=2, max_executors=2)
        observers = [seen, recorder]
        async with open_pool(config, registry=registry_with(backend), observers=observers) as pool:
            await wait_warm(pool, 2)
            assert await pool.run(Script.succeed(value="a")) == "a"
            assert await pool.run(Script.succeed(value="timed"), timeout=5.0) == "timed"
            handle = await pool.submit(Script.succeed(value="submitted"))
            assert await handle.result() == "submitted"
            stats = pool.statistics()
            assert stats.jobs_succeeded == 3
            assert (stats.busy, stats.idle) == (0, 2)
        first, timed, submitted = (outcome.job_id for outcome in recorder.finished)
        # Only the run() job without a timeout reached its executor before the hook; the
        # others (a timeout needs a scope; a submitted job runs in a task) did not.
        assert seen.runs == {first: 1 if declared else 0, timed: 0, submitted: 0}
        assert all(backend.runs[job_id] == 1 for job_id in seen.runs)

    run_virtual(main)


def test_a_run_job_under_the_pools_job_timeout_takes_the_usual_path() -> None:
    backend = hands_over()
    seen = RunsAtStart(backend)

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1, job_timeout=5.0)
        async with open_pool(config, registry=registry_with(backend), observers=[seen]) as pool:
            await wait_warm(pool, 1)
            assert await pool.run(Script.succeed(value="a")) == "a"
        # The pool's timeout needs a cancel scope, as the job's own does.
        assert list(seen.runs.values()) == [0]

    run_virtual(main)


def test_a_job_that_waits_for_an_executor_takes_the_usual_path() -> None:
    backend = hands_over()
    seen = RunsAtStart(backend)

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1)
        async with open_pool(config, registry=registry_with(backend), observers=[seen]) as pool:
            await wait_warm(pool, 1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, Script.succeed(seconds=1.0))
                await pool.wait_until(lambda s: s.busy == 1)
                # no idle executor: this one waits, and is launched when the first ends
                assert await pool.run(Script.succeed(value="second")) == "second"
        assert sorted(seen.runs.values()) == [0, 1]

    run_virtual(main)


def test_a_launch_refused_at_once_is_retried_elsewhere_and_never_runs() -> None:
    backend = hands_over()

    async def main() -> None:
        config = make_config(idle_executors=2, max_executors=2, launch_attempts=2)
        async with open_pool(config, registry=registry_with(backend)) as pool:
            await wait_warm(pool, 2)
            with pytest.raises(JobFailed) as failed:
                await pool.run(Script.refuse())
            outcome = failed.value.outcome
            assert outcome.reason is FailureReason.LAUNCH_FAILED
            assert outcome.attempts == 2
            assert backend.runs[outcome.job_id] == 0
            # both refusing executors were replaced: the pool keeps serving
            assert await pool.run(Script.succeed(value="next")) == "next"

    run_virtual(main)


def test_a_run_job_that_raises_at_once_fails_the_job_crashed_and_the_pool_keeps_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from executors.testing._simulated import SimulatedExecutor

    backend = hands_over()
    recorder = Recorder()
    real_run_job = SimulatedExecutor.run_job

    async def raising(self: SimulatedExecutor, job: Job) -> JobOutcome:
        if job.payload == "break":  # before it first waits: in begin()
            raise RuntimeError("lost the connection to the slot")
        return await real_run_job(self, job)

    monkeypatch.setattr(SimulatedExecutor, "run_job", raising)

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1)
        async with open_pool(config, registry=registry_with(backend), observers=[recorder]) as pool:
            await wait_warm(pool, 1)
            with pytest.raises(JobFailed) as failed:
                await pool.run("break")
            outcome = failed.value.outcome
            assert outcome.reason is FailureReason.CRASHED
            assert outcome.attempts == 1
            assert outcome.error is not None
            assert outcome.error.message == "lost the connection to the slot"
            assert await pool.run(Script.succeed(value="next")) == "next"
        assert [reason for _, reason in recorder.closed].count("broken") == 1

    run_virtual(main)
    assert "run_job raised" in caplog.text


@pytest.mark.parametrize("host", HOSTS)
def test_a_caller_cancelled_while_its_handed_over_job_runs_ends_it_cancelled(host: str) -> None:
    backend = hands_over()
    recorder = Recorder()
    started = RunsAtStart(backend)

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1)
        observers = [recorder, started]
        async with open_pool(config, registry=registry_with(backend), observers=observers) as pool:
            await wait_warm(pool, 1)
            with anyio.CancelScope() as caller:
                async with anyio.create_task_group() as tg:

                    async def cancel_once_started() -> None:
                        await pool.wait_until(lambda s: s.busy == 1)
                        caller.cancel()

                    tg.start_soon(cancel_once_started)
                    await pool.run(Script.hang())
            assert caller.cancelled_caught
            assert await pool.run(Script.succeed(value="next")) == "next"
        cancelled, following = recorder.finished
        assert cancelled.status is JobStatus.CANCELLED
        assert following.ok
        assert list(started.runs.values()) == [1, 1], "both went the handed-over way"

    anyio.run(main, backend=host)
