"""The pool's invariants (docs/architecture.md) with real threads, on random programs of
scripted async jobs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thread_helpers import PATIENCE, config, executor_threads

from executors.testing._program import Step, play_program
from executors.testing.strategies import check_invariants, programs, scripts

pytestmark = pytest.mark.anyio

# "hang" awaits forever, but on its thread's loop: cancellation (job_timeout, cancel
# steps, drain) reaches it, so nothing is abandoned and every thread ends.
thread_programs = programs(
    scripts(seconds=[0.0, 0.001, 0.01]), wait_seconds=[0.0, 0.005, 0.02], min_size=1, max_size=12
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(
    program=thread_programs,
    drain_timeout=st.sampled_from([0.0, 0.02]),
    loop=st.sampled_from(["asyncio", "trio"]),
    warm=st.booleans(),
)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
async def test_invariants_1_2_5_6_9_10_hold_with_real_threads(
    anyio_backend: str, program: list[Step], drain_timeout: float, loop: str, warm: bool
) -> None:
    cfg = config(
        entrypoint="executors.testing:scripted",
        idle_executors=1,
        max_executors=3,
        drain_timeout=drain_timeout,
        close_timeout=0.5,
        job_timeout=0.3,
        backend_options={"loop": loop},
    )
    # unless warm, the program races the first thread's start
    result = await play_program(cfg, program, warm_within=PATIENCE if warm else None)
    check_invariants(result, margin=1.0)
    # every thread the pool started has ended (the fixture checks it after the whole test)
    assert not list(executor_threads())
