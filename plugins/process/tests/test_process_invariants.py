"""The pool's invariants (docs/architecture.md) with real worker processes."""

from __future__ import annotations

import anyio
import process_jobs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from process_helpers import PATIENCE, config

from executors import AcquireError, FailureReason, open_pool
from executors.testing import Script
from executors.testing._program import (
    Recorder,
    Step,
    check_at_most_once,
    check_bounded_drain,
    check_bounds,
    check_exactly_one_outcome,
    check_no_leaks,
    check_one_job_per_slot,
    run_program,
)

pytestmark = pytest.mark.anyio


def _remote_traceback(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", [])
    assert notes, f"{exc!r} carries no remote traceback"
    return "\n".join(notes)


async def test_invariant_3_a_raising_setup_gives_acquire_error_caused_by_its_exception() -> None:
    cfg = config(setup="process_jobs:broken_setup", acquire_attempts=1)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run(None)
    cause = info.value.__cause__
    assert isinstance(cause, process_jobs.SetupFailed)
    assert str(cause) == "model weights not found"
    traceback = _remote_traceback(cause)
    assert "remote traceback" in traceback
    assert 'raise SetupFailed("model weights not found")' in traceback
    assert info.value.outcome.reason is FailureReason.ACQUIRE_FAILED


async def test_invariant_3_every_setup_raising_fails_every_waiting_job_without_hanging() -> None:
    cfg = config(
        setup="process_jobs:broken_setup", idle_executors=1, max_executors=2, acquire_attempts=2
    )
    async with open_pool(cfg) as pool:
        handles = [await pool.submit(None) for _ in range(3)]
        with anyio.fail_after(PATIENCE):
            outcomes = [await handle.outcome() for handle in handles]
    for outcome in outcomes:
        assert outcome.reason is FailureReason.ACQUIRE_FAILED
        assert outcome.error is not None
        assert isinstance(outcome.error.exception, process_jobs.SetupFailed)


async def test_invariant_3_a_setup_hanging_past_initialize_timeout_gives_acquire_error() -> None:
    cfg = config(setup="process_jobs:hanging_setup", initialize_timeout=0.3, acquire_attempts=1)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run(None)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert "initialize_timeout" in str(info.value.__cause__)
    # No worker is left: the autouse no_leaks() fixture checks every child process.


scripts = st.one_of(
    st.builds(Script.succeed, st.integers(), st.sampled_from([0.0, 0.01])),
    st.builds(Script.fail, st.just("boom")),
    st.just(Script.hang()),
)
programs = st.lists(
    st.one_of(
        st.builds(Step, st.just("submit"), scripts),
        st.builds(Step, st.just("cancel"), number=st.integers(0, 10)),
        st.builds(Step, st.just("wait"), seconds=st.sampled_from([0.0, 0.01, 0.1])),
        st.builds(Step, st.just("idle"), number=st.integers(0, 2)),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(program=programs, drain_timeout=st.sampled_from([0.0, 0.05]), warm=st.booleans())
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
async def test_invariants_1_2_5_6_9_10_hold_with_real_processes(
    anyio_backend: str, program: list[Step], drain_timeout: float, warm: bool
) -> None:
    recorder = Recorder()
    cfg = config(
        entrypoint="executors.testing:scripted",
        idle_executors=1,
        max_executors=2,
        drain_timeout=drain_timeout,
        close_timeout=1.0,
        job_timeout=1.0,
    )
    async with open_pool(cfg, observers=[recorder]) as pool:
        if warm:  # else the program races the first worker's start
            with anyio.fail_after(PATIENCE):
                await pool.wait_until(lambda s: s.idle == 1)
        result = await run_program(pool, recorder, program)
    check_exactly_one_outcome(result)
    check_one_job_per_slot(result)
    check_at_most_once(result)
    check_bounds(result)
    check_bounded_drain(result, margin=3.0)
    check_no_leaks(result)
