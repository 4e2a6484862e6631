"""The pool's invariants (docs/architecture.md) with real threads, on random programs of
scripted async jobs."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thread_helpers import PATIENCE, config, executor_threads

from executors import open_pool
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

# "hang" awaits forever, but on its thread's loop: cancellation (job_timeout, cancel
# steps, drain) reaches it, so nothing is abandoned and every thread ends.
scripts = st.one_of(
    st.builds(Script.succeed, st.integers(), st.sampled_from([0.0, 0.001, 0.01])),
    st.builds(Script.fail, st.just("boom")),
    st.just(Script.hang()),
)
programs = st.lists(
    st.one_of(
        st.builds(Step, st.just("submit"), scripts),
        st.builds(Step, st.just("cancel"), number=st.integers(0, 10)),
        st.builds(Step, st.just("wait"), seconds=st.sampled_from([0.0, 0.005, 0.02])),
        st.builds(Step, st.just("idle"), number=st.integers(0, 3)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(
    program=programs,
    drain_timeout=st.sampled_from([0.0, 0.02]),
    loop=st.sampled_from(["asyncio", "trio"]),
    warm=st.booleans(),
)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
async def test_invariants_1_2_5_6_9_10_hold_with_real_threads(
    anyio_backend: str, program: list[Step], drain_timeout: float, loop: str, warm: bool
) -> None:
    recorder = Recorder()
    cfg = config(
        entrypoint="executors.testing:scripted",
        idle_executors=1,
        max_executors=3,
        drain_timeout=drain_timeout,
        close_timeout=0.5,
        job_timeout=0.3,
        backend_options={"loop": loop},
    )
    async with open_pool(cfg, observers=[recorder]) as pool:
        if warm:  # else the program races the first thread's start
            with anyio.fail_after(PATIENCE):
                await pool.wait_until(lambda s: s.idle == 1)
        result = await run_program(pool, recorder, program)
    check_exactly_one_outcome(result)
    check_one_job_per_slot(result)
    check_at_most_once(result)
    check_bounds(result)
    check_bounded_drain(result)
    check_no_leaks(result)
    # every thread the pool started has ended (the fixture checks it after the whole test)
    assert not list(executor_threads())
