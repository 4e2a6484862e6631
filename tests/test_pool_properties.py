"""Invariants 1-10 of the async pool over SimulatedBackend, on trio's MockClock, under
random programs of jobs, faults, cancellations and idle-target changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executors import PoolConfig, Registry, open_pool
from executors.testing import Script, SimulatedBackend
from executors.testing._program import (
    ProgramResult,
    Recorder,
    Step,
    check_at_most_once,
    check_bounded_drain,
    check_bounds,
    check_exactly_one_outcome,
    check_no_leaks,
    check_nothing_warmed_is_dropped,
    check_one_job_per_slot,
    run_program,
)
from executors.testing.strategies import programs, scripts

if TYPE_CHECKING:
    from collections.abc import Callable

spawn_steps = st.one_of(
    st.builds(Script.succeed, st.none(), st.sampled_from([0.0, 0.5, 2.0])),
    st.just(Script.fail("setup failed")),
    st.just(Script.hang()),
)
steps = programs(
    scripts(
        seconds=[0.0, 0.5, 3.0], fail_seconds=[0.0, 1.0], crash_seconds=[0.0, 1.0], refuse=True
    ),
    wait_seconds=[0.1, 1.0, 5.0],
    max_size=25,
    max_cancel=20,
)
configs = st.builds(
    PoolConfig,
    backend=st.just("simulated"),
    entrypoint=st.just("executors.testing:echo"),
    idle_executors=st.integers(0, 2),
    max_executors=st.integers(2, 4),
    max_concurrent_initializations=st.integers(1, 2),
    initialize_timeout=st.just(4.0),
    job_timeout=st.sampled_from([None, 2.0, 10.0]),
    close_timeout=st.just(1.0),
    drain_timeout=st.sampled_from([0.0, 3.0, 20.0]),
    max_jobs_per_executor=st.sampled_from([None, 1, 2]),
    acquire_attempts=st.integers(1, 3),
    launch_attempts=st.integers(1, 3),
    spawn_backoff=st.just(0.25),
    spawn_backoff_max=st.just(2.0),
)


def play(config: PoolConfig, spawns: list[Script], program: list[Step]) -> ProgramResult:
    backend = SimulatedBackend(spawns=spawns)
    registry = Registry.empty()
    registry.add_backend(backend)
    results: list[ProgramResult] = []

    async def main() -> None:
        recorder = Recorder()
        async with open_pool(config, registry=registry, observers=[recorder]) as pool:
            results.append(await run_program(pool, recorder, program))
        # the simulated backend sees every executor it created closed: nothing leaked
        assert backend.live == set(), f"executors left open: {backend.live}"
        assert backend.peak_starting <= config.max_concurrent_initializations
        assert backend.peak_live <= config.max_executors
        assert all(count <= 1 for count in backend.runs.values()), "a job ran twice"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return results[0]


CHECKS: dict[str, Callable[[ProgramResult], None]] = {
    "invariant_1_exactly_one_outcome": check_exactly_one_outcome,
    "invariant_2_one_job_per_slot": check_one_job_per_slot,
    "invariant_4_nothing_warmed_is_dropped": check_nothing_warmed_is_dropped,
    "invariant_5_at_most_once_execution": check_at_most_once,
    "invariant_6_bounds": check_bounds,
    "invariant_9_bounded_drain": check_bounded_drain,
    "invariant_10_no_leaks": check_no_leaks,
}


@pytest.mark.parametrize("invariant", sorted(CHECKS))
@given(config=configs, spawns=st.lists(spawn_steps, max_size=6), program=steps)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_async_pool_on_virtual_time(
    invariant: str, config: PoolConfig, spawns: list[Script], program: list[Step]
) -> None:
    CHECKS[invariant](play(config, spawns, program))


@given(
    config=configs,
    targets=st.lists(st.integers(0, 2), max_size=4),
    jobs=st.lists(
        st.builds(Script.succeed, st.integers(), st.sampled_from([0.0, 1.0])), max_size=8
    ),
)
@settings(max_examples=60, deadline=None)
def test_invariant_7_without_faults_the_idle_set_settles_at_the_target(
    config: PoolConfig, targets: list[int], jobs: list[Script]
) -> None:
    registry = Registry.empty()
    registry.add_backend(SimulatedBackend())

    async def main() -> None:
        async with open_pool(config, registry=registry) as pool:
            target = config.idle_executors
            handles = [await pool.submit(job) for job in jobs]
            for target in targets:
                pool.set_idle_executors(min(target, config.max_executors))
            for handle in handles:
                await handle.outcome()
            with trio.fail_after(600):
                await pool.wait_until(
                    lambda s: s.idle == target and s.starting == 0 and s.closing == 0
                )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
