"""The Hypothesis state machine behind rule EX-1: random steps against a real pool.

The pool runs on an event loop in a thread of its own (an anyio blocking portal), so
Hypothesis' synchronous rules drive it step by step: submit a fault-injecting job,
cancel one, wait for one's outcome, change the idle target, pause, drain and reopen.
After every step each invariant is checked, and a failure names the rule and the
invariant broken.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.from_thread
import attrs
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ..._job import FailureReason, JobStatus
from ..._pool import open_pool
from .._program import Recorder
from ..jobs import Fault

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.from_thread import BlockingPortal

    from ..._config import PoolConfig
    from ..._executor import Capabilities
    from ..._job import JobOutcome
    from ..._plugins import Registry
    from ..._pool import JobHandle, Pool

_JOBS = "executors.testing.jobs"
#: outcomes any job may end with when the machine cancelled it or the pool drained
_CANCELLED = {FailureReason.CANCELLED, FailureReason.TIMED_OUT}
_DRAINED = {FailureReason.POOL_CLOSED, FailureReason.CANCELLED}
_NATURAL = {"raise": FailureReason.RAISED, "crash": FailureReason.CRASHED}
#: the last steps a failure message lists
_STEPS_SHOWN = 40


def faults(capabilities: Capabilities) -> st.SearchStrategy[Fault]:
    """The faults a backend with ``capabilities`` can be asked to survive."""
    choices = [
        st.builds(Fault, st.just("echo"), st.integers() | st.text(max_size=8)),
        st.builds(Fault, st.just("raise"), st.sampled_from(["boom", "bang"])),
        st.builds(Fault, st.just("sleep"), st.sampled_from([0.0, 0.01, 0.05])),
        st.builds(Fault, st.just("allocate"), st.sampled_from([1, 4])),
        st.just(Fault("hang")),
    ]
    if capabilities.isolates_crashes:
        choices.append(st.builds(Fault, st.just("crash"), st.sampled_from([3, 7])))
    if capabilities.async_entrypoints:
        choices.append(st.builds(Fault, st.just("block_loop"), st.sampled_from([0.02])))
    return st.one_of(choices)


@attrs.define
class _Job:
    handle: JobHandle
    fault: Fault
    cancelled: bool = False


class PoolMachine(RuleBasedStateMachine):
    """Drives one real pool at a time on the backend of :attr:`config`.

    Use :meth:`for_backend` to make the machine class for a backend, and
    ``hypothesis.stateful.run_state_machine_as_test`` to run it.
    """

    #: builds the pool configuration from the rule's overrides
    make_config: ClassVar[Callable[..., PoolConfig]]
    capabilities: ClassVar[Capabilities]
    registry: ClassVar[Registry | None] = None
    #: seconds a drain may take past drain_timeout + close_timeout
    margin: ClassVar[float] = 3.0
    #: seconds a job that should end may take before the step fails instead of hanging
    patience: ClassVar[float] = 30.0
    #: what failure messages start with
    label: ClassVar[str] = "EX-1 exactly_one_outcome"
    #: the message of the first invariant this class saw broken, kept for a failure that
    #: Hypothesis cannot replay exactly (a real backend runs in real time)
    first_failure: ClassVar[str | None] = None

    @classmethod
    def for_backend(
        cls,
        make_config: Callable[..., PoolConfig],
        capabilities: Capabilities,
        *,
        registry: Registry | None = None,
        label: str = "EX-1 exactly_one_outcome",
    ) -> type[PoolMachine]:
        """A machine class whose pools come from ``make_config(**overrides)``."""
        attributes: dict[str, Any] = {
            "make_config": staticmethod(make_config),
            "capabilities": capabilities,
            "registry": registry,
            "label": label,
            "first_failure": None,
        }
        return type(cls.__name__, (cls,), attributes)

    def __init__(self) -> None:
        super().__init__()
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._pool: Pool | None = None
        self._pool_exit: contextlib.ExitStack | None = None
        self._recorder = Recorder()
        self._jobs: list[_Job] = []
        self._draining = False
        self._config: PoolConfig | None = None
        self._failed = False
        # What this run did, shown in a failure: a real backend runs in real time, so a
        # replay by Hypothesis may fail a step earlier or later than the first run.
        self._steps: list[str] = []

    # -- helpers ------------------------------------------------------------------------

    def _fail(self, invariant_name: str, message: str) -> None:
        self._failed = True
        steps = "\n".join(f"  {step}" for step in self._steps[-_STEPS_SHOWN:])
        msg = f"{self.label}: invariant {invariant_name}: {message}\nsteps of this run:\n{steps}"
        if type(self).first_failure is None:
            type(self).first_failure = msg
        raise AssertionError(msg)

    def _log(self, step: str) -> None:
        self._steps.append(step)

    @property
    def portal(self) -> BlockingPortal:
        assert self._portal is not None
        return self._portal

    @property
    def pool(self) -> Pool:
        assert self._pool is not None
        return self._pool

    @property
    def config(self) -> PoolConfig:
        assert self._config is not None
        return self._config

    def _open_pool(self) -> None:
        self._recorder = Recorder()
        self._jobs = []
        self._draining = False
        pool_exit = contextlib.ExitStack()
        manager = open_pool(self.config, registry=self.registry, observers=[self._recorder])
        self._pool = pool_exit.enter_context(self.portal.wrap_async_context_manager(manager))
        self._pool_exit = pool_exit

    def _drain_and_check(self) -> None:
        """Drain the open pool, check what only holds at the end, and close it."""
        assert self._pool_exit is not None
        pool = self.pool
        self._draining = True
        started = self.portal.call(anyio.current_time)

        async def drain() -> float:
            with anyio.move_on_after(self.patience):
                await pool.drain()
            return anyio.current_time() - started

        elapsed = self.portal.call(drain)
        self._pool_exit.close()
        self._pool, self._pool_exit = None, None
        limit = self.config.drain_timeout + self.config.close_timeout + self.margin
        if elapsed > limit:
            self._fail("bounded_drain", f"drain took {elapsed:.2f}s > {limit:.2f}s")
        for job in self._jobs:
            if not job.handle.done():
                self._fail("every_job_ends", f"{job.handle.id} ({job.fault}) has no outcome")
        self._outcomes_match_jobs(self._snapshot())
        recorder = self._recorder
        if recorder.running:
            self._fail("every_job_ends", f"runs never ended: {recorder.running}")
        if not recorder.ready <= recorder.closed:
            left = sorted(recorder.ready - recorder.closed)
            self._fail("every_executor_closed", f"never closed: {left}")

    def _pick(self, number: int, which: Callable[[_Job], bool]) -> _Job | None:
        candidates = [job for job in self._jobs if which(job)]
        return candidates[number % len(candidates)] if candidates else None

    # -- rules --------------------------------------------------------------------------

    @initialize(
        host=st.sampled_from(["asyncio", "trio"]),
        sync=st.booleans(),
        warm=st.booleans(),
        drain_timeout=st.sampled_from([0.0, 0.1]),
    )
    def open(self, host: str, sync: bool, warm: bool, drain_timeout: float) -> None:
        caps = self.capabilities
        use_sync = caps.sync_entrypoints and (sync or not caps.async_entrypoints)
        self._config = self.make_config(
            entrypoint=f"{_JOBS}:{'fault' if use_sync else 'afault'}",
            drain_timeout=drain_timeout,
            close_timeout=1.0,
            job_timeout=None,
        )
        self._log(
            f"open(host={host!r}, sync={use_sync}, warm={warm}, drain_timeout={drain_timeout})"
        )
        portal_cm = anyio.from_thread.start_blocking_portal(backend=host)
        self._portal = self._stack.enter_context(portal_cm)
        self._open_pool()
        if warm:

            async def warmed() -> None:
                with anyio.fail_after(self.patience):
                    await self.pool.wait_until(lambda s: s.idle >= self.config.idle_executors)

            try:
                self.portal.call(warmed)
            except TimeoutError:
                self._fail("pool_warms", f"not warm after {self.patience}s")

    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        spec = data.draw(faults(self.capabilities), label="fault")
        # Hanging jobs never take every executor: a job awaited must be able to run.
        # (Replaced after the draw: what Hypothesis draws must not depend on timing.)
        hanging = sum(
            job.fault.kind == "hang" and not job.cancelled and not job.handle.done()
            for job in self._jobs
        )
        if spec.kind == "hang" and hanging >= self.config.max_executors - 1:
            spec = Fault("sleep", 0.0)
        handle = self.portal.call(self.pool.submit, spec)
        self._jobs.append(_Job(handle, spec))
        self._log(f"submit({spec}) -> {handle.id}")

    @precondition(lambda self: bool(self._jobs))
    @rule(number=st.integers(0, 50))
    def cancel(self, number: int) -> None:
        job = self._pick(number, lambda job: True)
        assert job is not None
        job.cancelled = True
        self.portal.call(job.handle.cancel)
        self._log(f"cancel({job.handle.id})")

    @precondition(lambda self: bool(self._jobs))
    @rule(number=st.integers(0, 50))
    def await_outcome(self, number: int) -> None:
        """Wait for a job that must end on its own: the pool keeps serving."""
        job = self._pick(number, lambda job: job.fault.kind != "hang" or job.cancelled)
        if job is None:
            return
        self._log(f"await_outcome({job.handle.id})")

        async def wait() -> JobOutcome | None:
            with anyio.move_on_after(self.patience):
                return await job.handle.outcome()
            return None

        if self.portal.call(wait) is None:
            self._fail(
                "jobs_end",
                f"{job.handle.id} ({job.fault}, cancelled={job.cancelled}) has no outcome "
                f"after {self.patience}s",
            )

    @rule(idle=st.integers(0, 3))
    def set_idle(self, idle: int) -> None:
        self._log(f"set_idle({idle})")
        self.portal.call(self.pool.set_idle_executors, min(idle, self.config.max_executors))

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.05]))
    def pause(self, seconds: float) -> None:
        self._log(f"pause({seconds})")
        self.portal.call(anyio.sleep, seconds)

    @rule()
    def drain_and_reopen(self) -> None:
        self._log("drain_and_reopen()")
        self._drain_and_check()
        self._open_pool()

    def teardown(self) -> None:
        try:
            if self._pool is not None:
                if self._failed:  # close without checking: the first failure is the one
                    assert self._pool_exit is not None
                    self._pool_exit.close()
                else:
                    self._drain_and_check()
        finally:
            self._stack.close()

    # -- invariants ---------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        """What the recorder and the pool say, read at one instant on the pool's loop."""

        def read() -> _Snapshot:
            recorder = self._recorder
            return _Snapshot(
                finished=dict(recorder.finished),
                started=dict(recorder.started),
                outcomes=dict(recorder.outcomes),
                overlaps=list(recorder.overlaps),
                peak_live=recorder.peak_live,
                done={job.handle.id for job in self._jobs if job.handle.done()},
                live=None if self._pool is None else _live(self._pool),
            )

        return self.portal.call(read)

    @invariant()
    def invariants_hold(self) -> None:
        """Every invariant, on one snapshot of the pool taken after the step."""
        now = self._snapshot()
        self._one_outcome_per_job(now)
        self._one_job_per_executor(now)
        self._launches_within_attempts(now)
        self._executors_within_max(now)
        self._outcomes_match_jobs(now)

    def _one_outcome_per_job(self, now: _Snapshot) -> None:
        """Invariant 1: no job is reported twice; a finished job was reported once."""
        for job_id, count in now.finished.items():
            if count > 1:
                self._fail("one_outcome_per_job", f"{job_id} was reported {count} times")
        for job_id in now.done:
            if now.finished.get(job_id) != 1:
                self._fail("one_outcome_per_job", f"{job_id} ended but was not reported")

    def _one_job_per_executor(self, now: _Snapshot) -> None:
        """Invariant 2: no executor runs two jobs at once."""
        if now.overlaps:
            self._fail("one_job_per_executor", f"overlapping runs: {now.overlaps}")

    def _launches_within_attempts(self, now: _Snapshot) -> None:
        """Invariant 5: a job is launched at most launch_attempts times."""
        for job_id, count in now.started.items():
            if count > self.config.launch_attempts:
                self._fail("launches_within_attempts", f"{job_id} launched {count} times")

    def _executors_within_max(self, now: _Snapshot) -> None:
        """Invariant 6: executors never exceed max_executors (closing ones included)."""
        most = self.config.max_executors
        if now.peak_live > most or (now.live or 0) > most:
            self._fail(
                "executors_within_max",
                f"{max(now.peak_live, now.live or 0)} executors > max_executors={most}",
            )

    def _outcomes_match_jobs(self, now: _Snapshot) -> None:
        """A job's outcome is its own: the value it returned, or a reason it can have."""
        for job in self._jobs:
            outcome = now.outcomes.get(job.handle.id)
            if outcome is not None:
                problem = _mismatch(job, outcome, self._draining)
                if problem:
                    self._fail("outcomes_match_jobs", f"{job.handle.id} ({job.fault}) {problem}")


@attrs.frozen
class _Snapshot:
    finished: dict[str, int]
    started: dict[str, int]
    outcomes: dict[str, JobOutcome]
    overlaps: list[str]
    peak_live: int
    done: set[str]
    live: int | None


def _live(pool: Pool) -> int:
    stats = pool.statistics()
    return stats.idle + stats.busy + stats.starting + stats.closing


def _mismatch(job: _Job, outcome: JobOutcome, draining: bool) -> str | None:
    """What is wrong with ``outcome`` for ``job``, or None."""
    spec = job.fault
    stopped = job.cancelled or draining
    if outcome.status is JobStatus.SUCCEEDED:
        if spec.kind == "hang" and stopped and outcome.value is None:
            return None  # a sync job returns early once asked to stop
        if not spec.succeeds:
            return f"succeeded with {outcome.value!r}, but it never returns"
        if outcome.value != spec.expected:
            return f"succeeded with {outcome.value!r}, expected {spec.expected!r}"
        return None
    allowed: set[FailureReason] = set()
    if spec.kind in _NATURAL:
        allowed.add(_NATURAL[spec.kind])
    if job.cancelled:
        allowed |= _CANCELLED
    if draining:
        allowed |= _DRAINED
    if outcome.reason not in allowed:
        expected = " or ".join(sorted(r.value for r in allowed)) or "success"
        why = f" ({outcome.error})" if outcome.error is not None else ""
        reason = outcome.reason.value if outcome.reason else outcome.status.value
        return f"ended {reason}{why}, expected {expected}"
    if outcome.reason is FailureReason.RAISED:
        error = outcome.error
        if error is None or error.message != spec.value:
            return f"raised {error!r}, expected InjectedFault({spec.value!r})"
    return None
