"""The async pool over SimulatedBackend, on trio's MockClock: virtual time, so timeouts,
backoff and drains cost no real time and every run is deterministic."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

from executors import (
    AcquireError,
    FailureReason,
    JobFailed,
    JobOutcome,
    JobStatus,
    PluginError,
    Pool,
    PoolClosed,
    PoolConfig,
    PoolFull,
    Registry,
    hookimpl,
    open_pool,
)
from executors.testing import Script, SimulatedBackend, SimulatedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def run_virtual(fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``fn`` under trio with a clock that jumps whenever every task is blocked."""
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


class Recorder:
    """An observer plugin that records every lifecycle hook call."""

    def __init__(self) -> None:
        self.finished: list[JobOutcome] = []
        self.ready: list[str] = []
        self.closed: list[tuple[str, str]] = []
        self.unhealthy: list[int] = []

    @hookimpl
    def executors_job_finished(self, outcome: JobOutcome) -> None:
        self.finished.append(outcome)

    @hookimpl
    def executors_executor_ready(self, executor_id: str) -> None:
        self.ready.append(executor_id)

    @hookimpl
    def executors_executor_closed(self, executor_id: str, reason: str) -> None:
        self.closed.append((executor_id, reason))

    @hookimpl
    def executors_pool_unhealthy(self, consecutive_failures: int) -> None:
        self.unhealthy.append(consecutive_failures)


def make_config(**overrides: Any) -> PoolConfig:
    base: dict[str, Any] = {
        "backend": "simulated",
        "entrypoint": "executors.testing:echo",
        "idle_executors": 1,
        "max_executors": 3,
        "max_concurrent_initializations": 2,
        "initialize_timeout": 5.0,
        "close_timeout": 2.0,
        "drain_timeout": 10.0,
        "spawn_backoff": 0.5,
        "spawn_backoff_max": 4.0,
    }
    base.update(overrides)
    return PoolConfig(**base)


def registry_with(backend: SimulatedBackend) -> Registry:
    registry = Registry.empty()
    registry.add_backend(backend)
    return registry


async def failed_outcome(pool: Pool, payload: object, via: str) -> JobOutcome:
    """The outcome of a job that fails, run through ``submit()`` or ``run()``: each
    performs its launches at its own place (a task of its own, or the caller's frame)."""
    if via == "submit":
        return await (await pool.submit(payload)).outcome()
    with pytest.raises(JobFailed) as info:
        await pool.run(payload)
    return info.value.outcome


async def wait_warm(pool: Pool, idle: int) -> None:
    with anyio.fail_after(60):
        await pool.wait_until(lambda s: s.idle >= idle)


# -- the LiveKit bug class ------------------------------------------------------------


def test_invariant_3_every_setup_raising_raises_acquire_error_instead_of_hanging() -> None:
    backend = SimulatedBackend(then=Script.fail("model file missing"))
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(acquire_attempts=3, consecutive_failure_limit=2),
            registry=registry_with(backend),
            observers=[recorder],
        ) as pool:
            with anyio.fail_after(120), pytest.raises(AcquireError) as info:
                await pool.run("payload")
            assert isinstance(info.value.__cause__, SimulatedError)
            assert "model file missing" in str(info.value)
            outcome = info.value.outcome
            assert outcome.reason is FailureReason.ACQUIRE_FAILED
            assert outcome.attempts == 0
            assert not pool.statistics().healthy
        assert recorder.unhealthy == [2]
        assert backend.live == set()

    run_virtual(main)


def test_invariant_3_initialize_timeout_counts_as_a_failed_spawn() -> None:
    backend = SimulatedBackend(then=Script.hang())

    async def main() -> None:
        async with open_pool(
            make_config(initialize_timeout=3.0, acquire_attempts=2),
            registry=registry_with(backend),
        ) as pool:
            with pytest.raises(AcquireError) as info:
                await pool.run("x")
            assert isinstance(info.value.__cause__, TimeoutError)
            assert "initialize_timeout" in str(info.value.__cause__)
        assert backend.live == set()

    run_virtual(main)


def test_invariant_3_a_spawn_failing_while_a_peer_is_in_flight_burns_no_attempt() -> None:
    # The first spawn fails at once; its peer takes 5 s and succeeds. One attempt only.
    backend = SimulatedBackend(spawns=[Script.fail(), Script.succeed(seconds=5.0)])

    async def main() -> None:
        async with open_pool(
            make_config(idle_executors=0, acquire_attempts=1, max_concurrent_initializations=2),
            registry=registry_with(backend),
        ) as pool:
            async with anyio.create_task_group() as tg:
                results: list[object] = []

                async def run(value: str) -> None:
                    results.append(await pool.run(value))

                tg.start_soon(run, "a")
                tg.start_soon(run, "b")
            assert sorted(map(str, results)) == ["a", "b"]

    run_virtual(main)


def test_invariant_8_spawn_failures_are_spaced_by_exponential_backoff() -> None:
    backend = SimulatedBackend(spawns=[Script.fail()] * 4)

    async def main() -> None:
        start = anyio.current_time()
        async with open_pool(
            make_config(max_concurrent_initializations=1, spawn_backoff=1.0, spawn_backoff_max=8.0),
            registry=registry_with(backend),
        ) as pool:
            await wait_warm(pool, 1)
            elapsed = anyio.current_time() - start
            # delays after failures 1..4: [0.5,1] + [1,2] + [2,4] + [4,8]
            assert 7.5 <= elapsed <= 15.0
            assert pool.statistics().spawn_failures == 4

    run_virtual(main)


# -- invariant 4: nothing warmed is dropped ---------------------------------------------


def simulated(**fields: Any) -> SimulatedBackend:
    return SimulatedBackend(**fields)


# A run() job without a timeout holds no cancel scope; one with a timeout does.
@pytest.mark.parametrize("timeout", [None, 60.0])
def test_invariant_4_a_waiter_cancelled_while_its_executor_is_handed_over_leaks_nothing(
    timeout: float | None,
) -> None:
    backend = simulated(spawns=[Script.succeed(seconds=1.0)])
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(idle_executors=0), registry=registry_with(backend), observers=[recorder]
        ) as pool:
            with anyio.move_on_after(1.0):  # expires exactly when the spawn completes
                await pool.run(Script.succeed(seconds=1.0), timeout=timeout)
            stats = await pool.wait_until(lambda s: s.busy == 0 and s.starting == 0)
            assert stats.jobs_cancelled == 1
            assert stats.idle + stats.closing <= 1
        assert [o.status for o in recorder.finished] == [JobStatus.CANCELLED]
        assert backend.live == set()

    run_virtual(main)


class CancelOnFinish:
    """An observer that cancels ``scope`` when the job ``job_id`` finishes: before the
    pool hands the freed executor to the next job."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.job_id: str | None = None

    @hookimpl
    def executors_job_finished(self, outcome: JobOutcome) -> None:
        if outcome.job_id == self.job_id:
            self.scope.cancel()


@pytest.mark.parametrize("timeout", [None, 60.0])
def test_a_run_cancelled_as_its_launch_is_handed_over_never_reaches_the_executor(
    timeout: float | None,
) -> None:
    # One executor: "first" runs while run("second") waits for it. The second's caller
    # is cancelled just as the executor frees up and the pool hands the second's launch
    # to the caller's task: the second job ends cancelled without ever being sent, and
    # the executor is kept for the third.
    backend = simulated()
    recorder = Recorder()

    async def main() -> None:
        caller = anyio.CancelScope()
        canceller = CancelOnFinish(caller)
        config = make_config(idle_executors=1, max_executors=1)
        observers = [recorder, canceller]
        async with open_pool(config, registry=registry_with(backend), observers=observers) as pool:
            await wait_warm(pool, 1)
            first = await pool.submit(Script.succeed(seconds=1.0))
            canceller.job_id = first.id
            with caller:
                await pool.run(Script.succeed(seconds=1.0), timeout=timeout)
            assert caller.cancelled_caught
            await pool.run(Script.succeed())
            assert recorder.closed == []
        first_outcome, second, third_outcome = recorder.finished
        assert first_outcome.ok
        assert third_outcome.ok
        assert third_outcome.executor_id == first_outcome.executor_id
        assert second.status is JobStatus.CANCELLED
        assert backend.runs[second.job_id] == 0, "the cancelled job reached the executor"

    run_virtual(main)


# -- outcomes ---------------------------------------------------------------------------


def test_invariant_1_a_raising_job_is_an_outcome_and_the_pool_keeps_serving() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(make_config(), registry=registry_with(backend)) as pool:
            with pytest.raises(JobFailed) as info:
                await pool.run(Script.fail("bad input"))
            outcome = info.value.outcome
            assert outcome.reason is FailureReason.RAISED
            assert outcome.error is not None
            assert "SimulatedError: bad input" in outcome.error.traceback
            assert await pool.run("next") == "next"

    run_virtual(main)


def test_invariant_1_a_crash_ends_only_its_job_and_the_executor_is_replaced() -> None:
    backend = SimulatedBackend()
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(), registry=registry_with(backend), observers=[recorder]
        ) as pool:
            crashing = await pool.submit(Script.crash(seconds=1.0))
            sibling = await pool.submit(Script.succeed("sibling", seconds=2.0))
            assert (await crashing.outcome()).reason is FailureReason.CRASHED
            assert await sibling.result() == "sibling"
            assert await pool.run("after") == "after"
        assert crashing.job.id in {o.job_id for o in recorder.finished}
        assert any(reason == "broken" for _, reason in recorder.closed)

    run_virtual(main)


@pytest.mark.parametrize("via", ["submit", "run"])
def test_an_outcome_for_another_job_fails_the_job_and_kills_the_executor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, via: str
) -> None:
    from executors.testing._simulated import SimulatedExecutor

    backend = SimulatedBackend()
    recorder = Recorder()
    real_run_job = SimulatedExecutor.run_job

    async def stale(self: SimulatedExecutor, job: Any) -> JobOutcome:
        outcome = await real_run_job(self, job)
        if job.payload == "stale":
            return JobOutcome.success("another-job", "not yours")
        return outcome

    monkeypatch.setattr(SimulatedExecutor, "run_job", stale)

    async def main() -> None:
        async with open_pool(
            make_config(), registry=registry_with(backend), observers=[recorder]
        ) as pool:
            outcome = await failed_outcome(pool, "stale", via)
            assert outcome.reason is FailureReason.CRASHED
            assert outcome.error is not None
            assert "with the outcome of job another-job" in outcome.error.message
            assert await pool.run("next") == "next"
        # killed by the pool for breaking the contract: not broken by itself
        assert [reason for _, reason in recorder.closed].count("killed") == 1

    run_virtual(main)
    assert "broke the contract (RuntimeError: executor" in caplog.text
    assert "answered job" in caplog.text


@pytest.mark.parametrize("via", ["submit", "run"])
def test_a_run_job_that_raises_fails_the_job_crashed_and_kills_the_executor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, via: str
) -> None:
    # run_job must return outcomes: an exception breaks the contract. The job may have
    # run, so it is not retried, and the executor is killed and replaced.
    from executors.testing._simulated import SimulatedExecutor

    backend = SimulatedBackend()
    recorder = Recorder()
    real_run_job = SimulatedExecutor.run_job

    async def raising(self: SimulatedExecutor, job: Any) -> JobOutcome:
        if job.payload == "break":
            raise RuntimeError("lost the connection to the slot")
        return await real_run_job(self, job)

    monkeypatch.setattr(SimulatedExecutor, "run_job", raising)

    async def main() -> None:
        async with open_pool(
            make_config(), registry=registry_with(backend), observers=[recorder]
        ) as pool:
            outcome = await failed_outcome(pool, "break", via)
            assert outcome.reason is FailureReason.CRASHED
            assert outcome.attempts == 1
            assert outcome.error is not None
            assert outcome.error.message == "lost the connection to the slot"
            assert await pool.run("next") == "next"
        assert [reason for _, reason in recorder.closed].count("killed") == 1

    run_virtual(main)
    assert "run_job raised" in caplog.text


def test_job_timeout_ends_the_job_timed_out() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(make_config(job_timeout=3.0), registry=registry_with(backend)) as pool:
            start = anyio.current_time()
            outcome = await (await pool.submit(Script.hang())).outcome()
            assert outcome.status is JobStatus.TIMED_OUT
            assert outcome.reason is FailureReason.TIMED_OUT
            assert math.isclose(anyio.current_time() - start, 3.0)
            # a per-job timeout overrides the pool's
            outcome = await (await pool.submit(Script.hang(), timeout=1.0)).outcome()
            assert outcome.finished_at is not None
            assert outcome.started_at is not None
            assert math.isclose(outcome.finished_at - outcome.started_at, 1.0)

    run_virtual(main)


@pytest.mark.parametrize("via", ["submit", "run"])
def test_a_timeout_of_zero_is_a_timeout(via: str) -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(make_config(), registry=registry_with(backend)) as pool:
            with anyio.fail_after(60):  # a timeout of 0 read as none would wait forever
                if via == "submit":
                    outcome = await (await pool.submit(Script.hang(), timeout=0)).outcome()
                else:
                    with pytest.raises(JobFailed) as info:
                        await pool.run(Script.hang(), timeout=0)
                    outcome = info.value.outcome
            assert outcome.reason is FailureReason.TIMED_OUT

    run_virtual(main)


def test_a_job_cancelled_before_its_run_begins_leaves_no_cancel_scope_behind() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(make_config(), registry=registry_with(backend)) as pool:
            await wait_warm(pool, 1)
            handle = await pool.submit(Script.hang())
            handle.cancel()  # launched on the idle executor, not begun
            outcome = await handle.outcome()
            assert outcome.reason is FailureReason.CANCELLED
            assert pool._run_scopes == {}
            assert pool._handles == {}

    run_virtual(main)


@pytest.mark.parametrize("via", ["submit", "run"])
def test_invariant_5_a_refused_launch_is_retried_elsewhere_and_runs_once(via: str) -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(idle_executors=2, launch_attempts=2), registry=registry_with(backend)
        ) as pool:
            await wait_warm(pool, 2)
            outcome = await failed_outcome(pool, Script.refuse(), via)
            # both executors refused it: LAUNCH_FAILED after exactly launch_attempts
            assert outcome.reason is FailureReason.LAUNCH_FAILED
            assert outcome.attempts == 2
            assert backend.runs[outcome.job_id] == 0

    run_virtual(main)


def test_max_jobs_per_executor_recycles_the_executor() -> None:
    backend = SimulatedBackend()
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(max_jobs_per_executor=2),
            registry=registry_with(backend),
            observers=[recorder],
        ) as pool:
            executors = [(await (await pool.submit(i)).outcome()).executor_id for i in range(4)]
        assert executors[0] == executors[1]
        assert max(executors.count(e) for e in executors) == 2
        recycled = [e for e, reason in recorder.closed if reason == "recycled"]
        assert executors[0] in recycled

    run_virtual(main)


def test_setup_state_reaches_every_job() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(entrypoint="tests.jobs:state_of", setup="tests.jobs:make_state"),
            registry=registry_with(backend),
        ) as pool:
            assert await pool.run(None) == {"model": "loaded"}

    run_virtual(main)


# -- backpressure -----------------------------------------------------------------------


def test_when_full_reject_raises_pool_full() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(max_executors=1, idle_executors=1, max_pending=1, when_full="reject"),
            registry=registry_with(backend),
        ) as pool:
            await wait_warm(pool, 1)
            running = await pool.submit(Script.succeed(seconds=5.0))
            await pool.wait_until(lambda s: s.busy == 1)
            waiting = await pool.submit(Script.succeed(seconds=1.0))
            with pytest.raises(PoolFull, match="max_pending"):
                await pool.submit("rejected")
            assert pool.statistics().load == 1.0
            await running.outcome()
            await waiting.outcome()

    run_virtual(main)


def test_when_full_wait_blocks_submit_until_there_is_room() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(max_executors=1, idle_executors=1, max_pending=1),
            registry=registry_with(backend),
        ) as pool:
            await wait_warm(pool, 1)
            await pool.submit(Script.succeed(seconds=5.0))
            await pool.wait_until(lambda s: s.busy == 1)
            await pool.submit(Script.succeed(seconds=5.0))
            start = anyio.current_time()
            third = await pool.submit("third")
            # room came when the first job ended and the second left the waiting line
            assert math.isclose(anyio.current_time() - start, 5.0)
            assert await third.result() == "third"

    run_virtual(main)


# -- invariant 9: bounded drain ----------------------------------------------------------


def test_invariant_9_drain_is_bounded_and_reports_every_outcome() -> None:
    backend = SimulatedBackend()
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(max_executors=2, drain_timeout=4.0, close_timeout=2.0),
            registry=registry_with(backend),
            observers=[recorder],
        ) as pool:
            quick = await pool.submit(Script.succeed("quick", seconds=1.0))
            stuck = [await pool.submit(Script.hang()) for _ in range(3)]
            start = anyio.current_time()
            await pool.drain()
            assert anyio.current_time() - start <= 4.0 + 2.0 + 1.0
            with pytest.raises(PoolClosed):
                await pool.submit("late")
            assert await quick.result() == "quick"
            for handle in stuck:
                assert (await handle.outcome()).reason is FailureReason.POOL_CLOSED
        assert len(recorder.finished) == 4
        assert backend.live == set()

    run_virtual(main)


def test_invariant_9_a_drain_kills_the_executors_of_runs_without_timeout() -> None:
    # A run of run() without a timeout holds no cancel scope: the end of the drain
    # kills its executor. The other runs are cancelled through their scopes. Every job
    # still ends POOL_CLOSED, within the drain's bound.
    backend = simulated()
    recorder = Recorder()

    async def main() -> None:
        config = make_config(idle_executors=4, max_executors=4, drain_timeout=4.0)
        async with open_pool(config, registry=registry_with(backend), observers=[recorder]) as pool:
            await wait_warm(pool, 4)
            raised: dict[float | None, list[JobOutcome]] = {None: [], 60.0: []}

            async def run(timeout: float | None) -> None:
                with pytest.raises(JobFailed) as info:
                    await pool.run(Script.hang(), timeout=timeout)
                raised[timeout].append(info.value.outcome)

            async with anyio.create_task_group() as tg:
                tg.start_soon(run, None)
                tg.start_soon(run, None)
                tg.start_soon(run, 60.0)
                submitted = await pool.submit(Script.hang())
                await pool.wait_until(lambda s: s.busy == 4)
                assert len(pool._run_scopes) == 2, "only the run with a timeout and submit's"
                start = anyio.current_time()
                await pool.drain()
                assert anyio.current_time() - start <= 4.0 + 2.0 + 1.0
            outcomes = [*raised[None], *raised[60.0], await submitted.outcome()]
        assert [o.reason for o in outcomes] == [FailureReason.POOL_CLOSED] * 4
        assert [o.status for o in outcomes] == [JobStatus.CANCELLED] * 4
        closed = dict(recorder.closed)
        # killed, or cancelled and then closed as the drain's end closes every executor
        assert [closed[str(o.executor_id)] for o in outcomes] == ["pool_closed"] * 4
        assert len(recorder.finished) == 4
        assert backend.live == set()

    run_virtual(main)


def test_invariant_9_leaving_the_block_with_an_error_cancels_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        start = anyio.current_time()
        handles = []

        async def fail_inside_the_pool() -> None:
            async with open_pool(make_config(), registry=registry_with(backend)) as pool:
                handles.append(await pool.submit(Script.hang()))
                await pool.wait_until(lambda s: s.busy == 1)
                raise KeyError("boom")

        with pytest.raises(KeyError):
            await fail_inside_the_pool()
        (handle,) = handles
        assert (await handle.outcome()).reason is FailureReason.POOL_CLOSED
        assert anyio.current_time() - start < 1.0
        assert backend.live == set()

    with caplog.at_level(logging.DEBUG, logger="executors"):
        run_virtual(main)
    # The block's own error is what the user sees: no drain "timed out after 0s".
    assert "timed out" not in caplog.text
    assert "its block raised KeyError; cancelling what is left" in caplog.text


def test_an_observer_with_a_misspelt_hook_is_refused_naming_the_closest() -> None:
    class Misspelt:
        @hookimpl
        def executors_job_finishd(self, outcome: JobOutcome) -> None:
            raise AssertionError("never called")

    async def main() -> None:
        with pytest.raises(PluginError) as info:
            async with open_pool(
                make_config(), registry=registry_with(SimulatedBackend()), observers=[Misspelt()]
            ):
                pytest.fail("the pool opened")
        assert "executors_job_finishd" in str(info.value)
        assert "did you mean 'executors_job_finished'?" in str(info.value)

    run_virtual(main)


def test_observer_hook_wrappers_and_order_are_honoured() -> None:
    calls: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def executors_job_finished(self, outcome: JobOutcome) -> Any:
            calls.append(f"before {outcome.value}")
            result = yield
            calls.append(f"after {outcome.value}")
            return result

    class First:
        @hookimpl(tryfirst=True)
        def executors_job_finished(self, outcome: JobOutcome) -> None:
            calls.append(f"first {outcome.value}")

    class Last:
        @hookimpl(trylast=True)
        def executors_job_finished(self, outcome: JobOutcome) -> None:
            calls.append(f"last {outcome.value}")

    async def main() -> None:
        observers = [Last(), Wrapper(), First()]
        async with open_pool(
            make_config(), registry=registry_with(SimulatedBackend()), observers=observers
        ) as pool:
            assert await pool.run(7) == 7

    run_virtual(main)
    assert calls == ["before 7", "first 7", "last 7", "after 7"]


def test_observer_that_raises_never_changes_an_outcome(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @hookimpl
        def executors_job_finished(self) -> None:
            raise RuntimeError("observer bug")

    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(), registry=registry_with(backend), observers=[Broken()]
        ) as pool:
            assert await pool.run(7) == 7

    run_virtual(main)
    assert "observer bug" in caplog.text


@pytest.mark.parametrize("host", ["asyncio", "trio"])
@pytest.mark.parametrize("timeout", [None, 60.0])
def test_only_a_run_job_with_a_timeout_holds_a_cancel_scope(
    host: str, timeout: float | None
) -> None:
    backend = simulated()

    class Started:
        """Sets ``began`` as the run begins (its scope, if any, is made by then)."""

        def __init__(self) -> None:
            self.began = anyio.Event()

        @hookimpl
        def executors_job_started(self) -> None:
            self.began.set()

    async def main() -> None:
        config = make_config()
        started = Started()
        async with (
            open_pool(config, registry=registry_with(backend), observers=[started]) as pool,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(
                functools.partial(pool.run, Script.succeed(seconds=30.0), timeout=timeout)
            )
            with anyio.fail_after(30):
                await started.began.wait()
            assert len(pool._run_scopes) == (0 if timeout is None else 1)
            tg.cancel_scope.cancel()

    anyio.run(main, backend=host)


@pytest.mark.parametrize("callers_first", [True, False])
def test_on_asyncio_the_drains_end_never_swallows_the_callers_own_cancellation(
    callers_first: bool,
) -> None:
    # A run() job without a timeout holds no cancel scope: the drain's end kills its
    # executor. A cancellation of the caller's own, in the same step and in either order,
    # must still reach the caller, and leave nothing behind in its task.
    backend, recorder = simulated(), Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(), registry=registry_with(backend), observers=[recorder]
        ) as pool:
            with anyio.CancelScope() as callers_scope:

                def drains_end() -> None:
                    pool._perform(pool._state.abort())

                async def end_both() -> None:
                    await pool.wait_until(lambda s: s.busy == 1)
                    cancels = [callers_scope.cancel, drains_end]
                    for cancel in cancels if callers_first else reversed(cancels):
                        cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(end_both)
                    await pool.run(Script.succeed(seconds=30.0))
                pytest.fail("run() returned: the caller's cancellation was swallowed")
            assert callers_scope.cancelled_caught
            task = asyncio.current_task()
            assert task is not None
            assert task.cancelling() == 0, "the drain's end left a cancellation in the task"

    anyio.run(main, backend="asyncio")
    (outcome,) = recorder.finished
    assert outcome.status is JobStatus.CANCELLED


def test_pools_with_the_same_plugins_share_their_observers_and_others_get_their_own() -> None:
    backend = SimulatedBackend()
    registry = registry_with(backend)
    first, second = Recorder(), Recorder()
    tables = []

    async def open_and_run(observers: list[object]) -> None:
        async with open_pool(make_config(), registry=registry, observers=observers) as pool:
            tables.append(pool._observers._hook)
            assert await pool.run(7) == 7

    async def main() -> None:
        await open_and_run([first])
        await open_and_run([first])
        await open_and_run([second])
        await open_and_run([first, second])

    run_virtual(main)
    assert tables[0] is tables[1], "the same plugins: one table"
    assert len({id(table) for table in tables[1:]}) == 3, "other plugins: a table of their own"
    # each recorder saw exactly the jobs of the pools it observed
    assert [len(first.finished), len(second.finished)] == [3, 2]


# -- health supervision -------------------------------------------------------------------


def test_a_job_over_memory_limit_is_killed_with_reason_memory_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SimulatedBackend()
    recorder = Recorder()

    async def main() -> None:
        async with open_pool(
            make_config(memory_warn_mb=100, memory_limit_mb=500, ping_interval=1.0),
            registry=registry_with(backend),
            observers=[recorder],
        ) as pool:
            hog = await pool.submit(Script.succeed(seconds=30.0, memory_mb=800))
            warm = await pool.submit(Script.succeed("fine", seconds=3.0, memory_mb=200))
            outcome = await hog.outcome()
            assert outcome.reason is FailureReason.MEMORY_LIMIT
            assert outcome.status is JobStatus.FAILED
            assert outcome.finished_at is not None
            assert outcome.started_at is not None
            assert outcome.finished_at - outcome.started_at <= 1.0
            assert await warm.result() == "fine"
        assert any(reason == "memory_limit" for _, reason in recorder.closed)

    run_virtual(main)
    assert "uses 200 MiB (memory_warn_mb = 100" in caplog.text
    # the kill and the close of the hog are one problem, logged once
    assert caplog.text.count("is memory_limit") == 1


def test_an_unresponsive_executor_is_killed_with_reason_unresponsive() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        async with open_pool(
            make_config(ping_interval=1.0, ping_timeout=5.0), registry=registry_with(backend)
        ) as pool:
            outcome = await (await pool.submit(Script.hang(unresponsive=True))).outcome()
            assert outcome.reason is FailureReason.UNRESPONSIVE
            assert outcome.finished_at is not None
            assert outcome.started_at is not None
            assert 5.0 < outcome.finished_at - outcome.started_at <= 6.0
            assert await pool.run("still serving") == "still serving"

    run_virtual(main)


def test_statistics_give_percentiles_of_queue_wait_and_run_time() -> None:
    backend = SimulatedBackend()

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1)
        async with open_pool(config, registry=registry_with(backend)) as pool:
            await pool.wait_until(lambda s: s.idle == 1)
            empty = pool.statistics()
            assert empty.queue_wait.count == 0
            assert empty.run_time.p50 is None
            # One executor: each job waits for the ones before it to run.
            handles = [await pool.submit(Script.succeed(seconds=s)) for s in (1.0, 2.0, 3.0)]
            for handle in handles:
                await handle.outcome()
            stats = pool.statistics()
        assert stats.run_time.samples == pytest.approx((1.0, 2.0, 3.0), abs=0.01)
        assert stats.run_time.p50 == pytest.approx(2.0, abs=0.01)
        assert stats.run_time.max == pytest.approx(3.0, abs=0.01)
        assert stats.queue_wait.samples == pytest.approx((0.0, 1.0, 3.0), abs=0.01)
        assert stats.queue_wait.p99 == pytest.approx(3.0, abs=0.01)
        assert stats.queue_wait.percentile(34) == pytest.approx(1.0, abs=0.01)

    run_virtual(main)


def test_latency_percentiles_keep_the_most_recent_jobs_only() -> None:
    from executors._pool import LATENCY_SAMPLES

    backend = SimulatedBackend()

    async def main() -> None:
        config = make_config(idle_executors=1, max_executors=1)
        async with open_pool(config, registry=registry_with(backend)) as pool:
            for _ in range(LATENCY_SAMPLES + 5):
                await pool.run(None)
            assert pool.statistics().run_time.count == LATENCY_SAMPLES

    run_virtual(main)


def test_the_pools_log_records_carry_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    backend = SimulatedBackend(spawns=[Script.fail("no GPU")])
    recorder = Recorder()

    async def main() -> None:
        config = make_config(memory_warn_mb=100, ping_interval=1.0)
        async with open_pool(
            config, registry=registry_with(backend), observers=[recorder], name="fields"
        ) as pool:
            await pool.wait_until(lambda s: s.idle == 1)
            await pool.run(Script.succeed(seconds=3.0, memory_mb=200))

    with caplog.at_level(logging.WARNING, logger="executors"):
        run_virtual(main)
    fields = [
        {key: getattr(record, key) for key in ("pool", "job_id", "executor_id", "reason")}
        for record in caplog.records
    ]
    assert fields
    assert all(field["pool"] == "fields" for field in fields)
    spawn_failed, memory_warn = (
        next(f for f in fields if f["reason"] == reason)
        for reason in ("spawn_failed", "memory_warn")
    )
    assert spawn_failed["executor_id"] == "fields-1"
    assert spawn_failed["job_id"] is None
    assert memory_warn["executor_id"] == "fields-2"
