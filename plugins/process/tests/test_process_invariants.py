"""The pool's invariants (docs/architecture.md) with real worker processes."""

from __future__ import annotations

import anyio
import process_jobs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from process_helpers import PATIENCE, config

from executors import AcquireError, FailureReason, open_pool
from executors.testing._program import Step, play_program
from executors.testing.strategies import check_invariants, programs, scripts

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


process_programs = programs(
    scripts(seconds=[0.0, 0.01]),
    wait_seconds=[0.0, 0.01, 0.1],
    min_size=1,
    max_size=8,
    max_idle=2,
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(program=process_programs, drain_timeout=st.sampled_from([0.0, 0.05]), warm=st.booleans())
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
async def test_invariants_1_2_5_6_9_10_hold_with_real_processes(
    anyio_backend: str, program: list[Step], drain_timeout: float, warm: bool
) -> None:
    cfg = config(
        entrypoint="executors.testing:scripted",
        idle_executors=1,
        max_executors=2,
        drain_timeout=drain_timeout,
        close_timeout=1.0,
        job_timeout=1.0,
    )
    # unless warm, the program races the first worker's start
    result = await play_program(cfg, program, warm_within=PATIENCE if warm else None)
    check_invariants(result, margin=3.0)
