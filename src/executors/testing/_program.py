"""Random programs run against a real pool, and the invariants checked after them.

A *program* is a list of steps (submit a scripted job, cancel an earlier job, wait,
change the idle target); :func:`run_program` plays it against an open pool, then drains
it, while a :class:`Recorder` observer logs every lifecycle hook (:func:`play_program`
opens the pool and its recorder too). Each ``check_*``
function asserts one invariant of ``docs/architecture.md`` on what was recorded.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from .._hookspecs import hookimpl
from .._pool import open_pool
from ._simulated import Script

if TYPE_CHECKING:
    from .._config import PoolConfig
    from .._job import Job, JobOutcome
    from .._pool import JobHandle, Pool
    from .witness import Witness


@attrs.frozen
class Step:
    """One step of a program."""

    kind: Literal["submit", "cancel", "wait", "idle"]
    script: Script = attrs.field(factory=Script)
    #: for "cancel": which earlier submission (modulo their number); for "idle": target
    number: int = 0
    #: for "wait": how long
    seconds: float = 0.0


@attrs.define(eq=False)
class Recorder:
    """An observer plugin that records every lifecycle hook and checks, as they happen,
    that no executor runs two jobs at once."""

    finished: collections.Counter[str] = attrs.field(factory=collections.Counter)
    outcomes: dict[str, JobOutcome] = attrs.field(factory=dict)
    started: collections.Counter[str] = attrs.field(factory=collections.Counter)
    ready: set[str] = attrs.field(factory=set)
    closed: set[str] = attrs.field(factory=set)
    # executor -> the reason it was reported closed with (``pool_closed``, ``broken``...)
    closed_reasons: dict[str, str] = attrs.field(factory=dict)
    # executor -> job it runs now; job -> executor it runs on now
    running_on: dict[str, str] = attrs.field(factory=dict)
    running: dict[str, str] = attrs.field(factory=dict)
    overlaps: list[str] = attrs.field(factory=list)
    peak_live: int = 0
    #: marks in it the moment each job's outcome is delivered
    witness: Witness | None = None

    @hookimpl
    def executors_executor_ready(self, executor_id: str) -> None:
        self.ready.add(executor_id)
        self.peak_live = max(self.peak_live, len(self.ready - self.closed))

    @hookimpl
    def executors_executor_closed(self, executor_id: str, reason: str) -> None:
        self.closed.add(executor_id)
        self.closed_reasons[executor_id] = reason

    @hookimpl
    def executors_job_started(self, job: Job, executor_id: str) -> None:
        self.started[job.id] += 1
        # A job launched again was refused (LaunchError) where it was before.
        self.running_on.pop(self.running.pop(job.id, ""), None)
        if executor_id in self.running_on:
            self.overlaps.append(f"{job.id} on {executor_id} beside {self.running_on[executor_id]}")
        self.running_on[executor_id] = job.id
        self.running[job.id] = executor_id

    @hookimpl
    def executors_job_finished(self, job: Job, outcome: JobOutcome) -> None:
        if self.witness is not None:
            self.witness.delivered(job.id, outcome.status.value)
        self.finished[job.id] += 1
        self.outcomes[job.id] = outcome
        executor_id = self.running.pop(job.id, None)
        if executor_id is not None:
            self.running_on.pop(executor_id, None)


@attrs.frozen
class ProgramResult:
    handles: list[JobHandle]
    recorder: Recorder
    config: PoolConfig
    #: seconds ``drain()`` took
    drain_seconds: float


async def run_program(pool: Pool, recorder: Recorder, steps: list[Step]) -> ProgramResult:
    """Play ``steps`` against ``pool``, then drain it."""
    handles: list[JobHandle] = []
    for step in steps:
        if step.kind == "submit":
            handles.append(await pool.submit(step.script))
        elif step.kind == "cancel" and handles:
            handles[step.number % len(handles)].cancel()
        elif step.kind == "wait":
            await anyio.sleep(step.seconds)
        elif step.kind == "idle":
            pool.set_idle_executors(min(step.number, pool.config.max_executors))
    start = anyio.current_time()
    await pool.drain()
    return ProgramResult(handles, recorder, pool.config, anyio.current_time() - start)


async def play_program(
    config: PoolConfig, steps: list[Step], *, warm_within: float | None = None
) -> ProgramResult:
    """Open a pool on ``config``, observed by a :class:`Recorder`, and play ``steps`` on
    it with :func:`run_program`. With ``warm_within``, first wait (failing after that many
    seconds) until the pool has its ``idle_executors`` ready."""
    recorder = Recorder()
    async with open_pool(config, observers=[recorder]) as pool:
        if warm_within is not None:
            with anyio.fail_after(warm_within):
                await pool.wait_until(lambda s: s.idle == config.idle_executors)
        return await run_program(pool, recorder, steps)


# -- invariants ------------------------------------------------------------------------


def check_exactly_one_outcome(result: ProgramResult) -> None:
    """Invariant 1: every accepted job has exactly one outcome, reported once."""
    for handle in result.handles:
        assert handle.done(), f"{handle.id} has no outcome"
        assert result.recorder.finished[handle.id] == 1, (
            f"{handle.id} was reported {result.recorder.finished[handle.id]} times"
        )
    assert set(result.recorder.finished) == {h.id for h in result.handles}


def check_one_job_per_slot(result: ProgramResult) -> None:
    """Invariant 2: no executor ran two jobs at once, no job ran on two executors."""
    assert not result.recorder.overlaps, f"overlapping runs: {result.recorder.overlaps}"


def check_nothing_warmed_is_dropped(result: ProgramResult) -> None:
    """Invariant 4: every executor that became ready was closed by the pool."""
    assert result.recorder.ready <= result.recorder.closed, (
        f"never closed: {sorted(result.recorder.ready - result.recorder.closed)}"
    )


def check_at_most_once(result: ProgramResult) -> None:
    """Invariant 5: a job is launched at most ``launch_attempts`` times."""
    for job_id, count in result.recorder.started.items():
        assert count <= result.config.launch_attempts, f"{job_id} launched {count} times"


def check_bounds(result: ProgramResult) -> None:
    """Invariant 6: live ready executors never exceed ``max_executors``."""
    assert result.recorder.peak_live <= result.config.max_executors


def check_bounded_drain(result: ProgramResult, margin: float = 1.0) -> None:
    """Invariant 9: drain returns within drain_timeout + close_timeout + margin."""
    limit = result.config.drain_timeout + result.config.close_timeout + margin
    assert result.drain_seconds <= limit, f"drain took {result.drain_seconds:.3f}s > {limit}s"


def check_no_leaks(result: ProgramResult) -> None:
    """Invariant 10: after the pool closed, every executor is closed and no run is open."""
    assert not result.recorder.running, f"runs never ended: {result.recorder.running}"
    check_nothing_warmed_is_dropped(result)
