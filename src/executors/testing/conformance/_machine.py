"""The Hypothesis state machines of rules EX-1 (a real pool) and SL-13 (bare executors),
and how they are run.

Each machine drives asynchronous code on an event loop in a thread of its own
(:class:`~._guard.LoopThread`), one step at a time, each step with a deadline: a backend
that hangs fails the step that called it, naming the call, and never hangs the checker.
Jobs report to a :class:`~executors.testing.witness.Witness`, so what ran where and when
is checked after every step as a fact.

A machine stops at its first failure: Hypothesis' replay of it (and, where shrinking is
on, its shrinking, within a time budget) cannot change what a real backend did in real
time, so the failure reported is the one seen, with the steps of its run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
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
from ..witness import Witness
from ._guard import LoopThread, Overran, WatchedBackend
from ._slot import MARGIN, base_endings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..._config import PoolConfig
    from ..._executor import Backend, Capabilities
    from ..._job import JobOutcome
    from ..._plugins import Registry
    from ..._pool import JobHandle, Pool

T = TypeVar("T")
_JOBS = "executors.testing.jobs"
#: outcomes any job may end with when the machine cancelled it or the pool drained
_CANCELLED = {FailureReason.CANCELLED, FailureReason.TIMED_OUT}
_DRAINED = {FailureReason.POOL_CLOSED, FailureReason.CANCELLED}
#: how a job whose process was killed from outside may end
_KILLED = {FailureReason.CRASHED, FailureReason.KILLED}
#: the last steps a failure message lists
_STEPS_SHOWN = 40
#: seconds of a job's own time limit in the ``submit_timed`` step
TIMED = 0.1


def faults(capabilities: Capabilities, *, sync: bool) -> st.SearchStrategy[Fault]:
    """The faults a backend with ``capabilities`` can be asked to survive (``sync``: its
    jobs run the sync entrypoint)."""
    choices = [
        st.builds(Fault, st.just("echo"), st.integers() | st.text(max_size=8)),
        st.builds(Fault, st.just("raise"), st.sampled_from(["boom", "bang"])),
        st.builds(Fault, st.just("raise_base"), st.sampled_from(base_endings(capabilities))),
        st.builds(Fault, st.just("sleep"), st.sampled_from([0.0, 0.01, 0.05])),
        st.builds(Fault, st.just("allocate"), st.sampled_from([1, 4])),
        st.just(Fault("hang")),
    ]
    if capabilities.isolates_crashes:
        choices.append(st.builds(Fault, st.just("crash"), st.sampled_from([3, 7])))
    if capabilities.can_kill_running_job and sync:
        # a sync job that never polls: only a kill stops it before its 20 s
        choices.append(st.just(Fault("ignore_cancel", 20.0)))
    if not sync:
        choices.append(st.builds(Fault, st.just("block_loop"), st.sampled_from([0.02])))
    return st.one_of(choices)


# -- what every machine shares -----------------------------------------------------------------


class MachineBase(RuleBasedStateMachine):
    """Failure bookkeeping, the time budget and the loop every step runs on."""

    #: what failure messages start with: the rule's id and name
    label: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]
    #: seconds a step that should end may take before it fails instead of hanging
    patience: ClassVar[float] = 30.0
    #: ``time.monotonic()`` after which no new run begins (the profile's time budget)
    budget_ends: ClassVar[float] = float("inf")
    #: shrink a failing run, until ``shrink_ends``
    shrinking: ClassVar[bool] = False
    shrink_budget: ClassVar[float] = 0.0
    shrink_ends: ClassVar[float] = float("inf")
    #: the first failure, and the one with the fewest steps, seen by this class
    first_failure: ClassVar[str | None] = None
    smallest_failure: ClassVar[tuple[int, str] | None] = None
    #: runs begun, and steps taken in all
    runs: ClassVar[int] = 0
    steps_taken: ClassVar[int] = 0

    #: builds the configuration of the pools (or bare backend) from the rule's overrides
    make_config: ClassVar[Callable[..., PoolConfig]]
    #: the backend under test
    backend: ClassVar[Backend]

    @classmethod
    def for_backend(
        cls,
        make_config: Callable[..., PoolConfig],
        backend: Backend,
        *,
        label: str = "",
        **attributes: Any,
    ) -> type[MachineBase]:
        """A machine class on ``backend``, whose configuration comes from
        ``make_config(**overrides)``, with these class attributes and fresh bookkeeping."""
        fresh = {"first_failure": None, "smallest_failure": None, "runs": 0, "steps_taken": 0}
        return type(
            cls.__name__,
            (cls,),
            {
                **fresh,
                "make_config": staticmethod(make_config),
                "backend": backend,
                "capabilities": backend.capabilities,
                "label": label or cls.label,
                **attributes,
            },
        )

    def __init__(self) -> None:
        super().__init__()
        self._loop: LoopThread | None = None
        self._witness: Witness | None = None
        self._config: PoolConfig | None = None
        self._watched = WatchedBackend(self.backend)
        self._failed = False
        # True once this run does nothing more (see _begin_run and _live)
        self._idle = False
        # the jobs of this run call the sync entrypoint (drawn by the initialize rule)
        self._sync = False
        # What this run did, shown in a failure: a real backend runs in real time, so a
        # replay by Hypothesis may fail a step earlier or later than the first run.
        self._steps: list[str] = []

    @property
    def config(self) -> PoolConfig:
        assert self._config is not None
        return self._config

    @property
    def witness(self) -> Witness:
        assert self._witness is not None
        return self._witness

    def _enter(self, host: str) -> None:
        """Open the run's witness, and its loop (on ``host``)."""
        self._witness = Witness().__enter__()
        grace = self.config.close_timeout + MARGIN
        self._loop = LoopThread(host, self._watched.log, grace).__enter__()

    def _exit(self) -> None:
        if self._loop is not None:
            self._loop.__exit__(None, None, None)
        if self._witness is not None:
            self._witness.__exit__(None, None, None)

    def _begin_run(self) -> bool:
        """Called first by each machine's initialize rule; False when this run does
        nothing. A run Hypothesis begins after the first failure (its replay, or a
        shrink out of its time) ends at once: with that failure, or passing. A run begun
        past the profile's budget passes at once. (Its steps still draw what Hypothesis
        asks: only what they do depends on the time.)"""
        cls = type(self)
        now = time.monotonic()
        if cls.first_failure is not None:
            if cls.shrinking and now <= cls.shrink_ends:
                cls.runs += 1
                return True
            self._idle = True
            if not cls.shrinking:
                raise AssertionError(cls.first_failure)
            return False
        if now > cls.budget_ends:
            self._idle = True
            return False
        cls.runs += 1
        return True

    def _live(self) -> bool:
        """Whether a step acts: not once the run is idle, or the budget is up (the run
        then goes on idle: the steps taken so far passed)."""
        if not self._idle and type(self).first_failure is None:
            self._idle = time.monotonic() > type(self).budget_ends
        return not self._idle and not self._failed

    def _fail(self, invariant_name: str, message: str) -> None:
        self._failed = True
        cls = type(self)
        steps = "\n".join(f"  {step}" for step in self._steps[-_STEPS_SHOWN:])
        msg = f"{self.label}: invariant {invariant_name}: {message}\nsteps of this run:\n{steps}"
        if cls.first_failure is None:
            cls.first_failure = msg
            cls.shrink_ends = time.monotonic() + cls.shrink_budget
        if cls.smallest_failure is None or len(self._steps) < cls.smallest_failure[0]:
            cls.smallest_failure = (len(self._steps), msg)
        raise AssertionError(msg)

    def _log(self, step: str) -> None:
        self._steps.append(step)
        type(self).steps_taken += 1

    @property
    def loop(self) -> LoopThread:
        assert self._loop is not None, "the machine's loop is not running"
        return self._loop

    def _call(
        self, function: Callable[..., Awaitable[T]], *args: Any, within: float, what: str
    ) -> T:
        """Run one step's async code on the loop; a step that overruns fails the machine
        (invariant ``never_hangs``), naming the backend calls still running."""
        try:
            return self.loop.call(function, *args, within=within, what=what)
        except Overran as overran:
            self._fail("never_hangs", str(overran))
            raise  # _fail raised already: for the type checker


def run_machine(machine: type[MachineBase], *, examples: int, steps: int) -> None:
    """Run ``machine`` under Hypothesis; raise the failure it saw, if any."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.errors import Flaky
    from hypothesis.stateful import run_state_machine_as_test

    phases = [p for p in Phase if machine.shrinking or p is not Phase.shrink]
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                phases=phases,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            ),
        )
    except (AssertionError, Flaky) as error:
        seen = machine.smallest_failure[1] if machine.smallest_failure else machine.first_failure
        if seen is None:
            raise
        note = ""
        if machine.shrinking and machine.smallest_failure is not None:
            note = f"\n(the smallest of the failing runs tried in {machine.shrink_budget:.0f}s)"
        # What Hypothesis says of its replay (which the machine ends at once) is noise.
        raise AssertionError(seen + note) from (None if isinstance(error, Flaky) else error)


# -- EX-1: a real pool -------------------------------------------------------------------------


@attrs.define
class _Job:
    handle: JobHandle
    fault: Fault
    cancelled: bool = False
    #: submitted with a time limit of its own (TIMED seconds)
    timed: bool = False
    #: its process was killed from outside while it ran
    killed: bool = False


@attrs.define(eq=False)
class _PoolHolder:
    """Holds one pool open in a task of the machine's loop until told to leave."""

    #: set once the pool is open, or its opening failed (made on the machine's loop)
    opened: anyio.Event
    pool: Pool | None = None
    leave: anyio.Event | None = None
    left: anyio.Event | None = None

    async def hold(self, config: PoolConfig, registry: Registry, recorder: Recorder) -> None:
        self.leave, self.left = anyio.Event(), anyio.Event()
        try:
            async with open_pool(config, registry=registry, observers=[recorder]) as pool:
                self.pool = pool
                self.opened.set()
                await self.leave.wait()
        finally:
            self.opened.set()
            self.left.set()


class PoolMachine(MachineBase):
    """Drives one real pool at a time on the backend under test.

    Use :meth:`for_backend` to make the machine class for a backend, and
    :func:`run_machine` to run it.
    """

    label: ClassVar[str] = "EX-1 exactly_one_outcome"
    #: seconds a drain may take past drain_timeout + close_timeout
    margin: ClassVar[float] = 3.0

    def __init__(self) -> None:
        super().__init__()
        self._holder: _PoolHolder | None = None
        self._recorder = Recorder()
        self._jobs: list[_Job] = []
        #: submit steps drawn in this run, acted on or not
        self._submits = 0
        self._draining = False

    # -- helpers ------------------------------------------------------------------------

    @property
    def pool(self) -> Pool:
        assert self._holder is not None
        assert self._holder.pool is not None
        return self._holder.pool

    def _step_bound(self) -> float:
        cfg = self.config
        return cfg.initialize_timeout + cfg.close_timeout + MARGIN

    def _open_pool(self) -> None:
        self._recorder = Recorder(witness=self._witness)
        self._jobs = []
        self._draining = False
        holder = self._holder = _PoolHolder(self._call(loop_event, within=MARGIN, what="an event"))
        registry = _registry_of(self._watched)
        held = self.loop.portal.start_task_soon(holder.hold, self.config, registry, self._recorder)
        self._call(holder.opened.wait, within=self._step_bound(), what="open_pool()")
        if holder.pool is None:
            error = held.exception(timeout=MARGIN) if held.done() else None
            self._fail("pool_opens", f"open_pool() failed: {error!r}")

    def _close_pool(self) -> float:
        """Drain the open pool and leave its block; seconds the drain took."""
        holder = self._holder
        assert holder is not None
        self._draining = True
        limit = self.config.drain_timeout + self.config.close_timeout + self.margin

        async def drain() -> float:
            started = anyio.current_time()
            await self.pool.drain()
            elapsed = anyio.current_time() - started
            assert holder.leave is not None
            assert holder.left is not None
            holder.leave.set()
            await holder.left.wait()
            return elapsed

        elapsed = self._call(drain, within=limit + self._step_bound(), what="drain()")
        self._holder = None
        if elapsed > limit:
            self._fail("bounded_drain", f"drain took {elapsed:.2f}s > {limit:.2f}s")
        return elapsed

    def _drain_and_check(self) -> None:
        """Drain the open pool, check what only holds at the end, and close it."""
        self._close_pool()
        for job in self._jobs:
            if not job.handle.done():
                self._fail("every_job_ends", f"{job.handle.id} ({job.fault}) has no outcome")
        self._outcomes_match_jobs(now := self._snapshot_now())
        self._contract_kept(now)
        recorder = self._recorder
        if recorder.running:
            self._fail("every_job_ends", f"runs never ended: {recorder.running}")
        if not recorder.ready <= recorder.closed:
            left = sorted(recorder.ready - recorder.closed)
            self._fail("every_executor_closed", f"never closed: {left}")
        for call in self._watched.log.calls:
            if call.method == "aclose()" and call.how == "cancelled":
                self._fail(
                    "graceful_close",
                    f"aclose() of {call.executor_id} did not return within close_timeout: "
                    "the pool had to kill it",
                )

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
        use_sync = self._sync = caps.sync_entrypoints and (sync or not caps.async_entrypoints)
        if not self._begin_run():
            return
        self._config = self.make_config(
            entrypoint=f"{_JOBS}:{'fault' if use_sync else 'afault'}",
            drain_timeout=drain_timeout,
            close_timeout=1.0,
            job_timeout=None,
        )
        self._log(
            f"open(host={host!r}, sync={use_sync}, warm={warm}, drain_timeout={drain_timeout})"
        )
        self._enter(host)
        self._open_pool()
        if warm:
            target = self.config.idle_executors
            self._call(
                self.pool.wait_until,
                lambda s: s.idle >= target,
                within=self._step_bound(),
                what="warming the pool",
            )

    @rule(data=st.data(), timed=st.booleans())
    def submit(self, data: st.DataObject, timed: bool) -> None:
        spec = data.draw(faults(self.capabilities, sync=self._sync), label="fault")
        self._submits += 1
        if not self._live():
            return
        # Jobs that never end by themselves never take every executor: a job awaited
        # must be able to run. (Replaced after the draw: what Hypothesis draws must not
        # depend on timing.)
        hanging = sum(
            job.fault.kind in ("hang", "ignore_cancel")
            and not job.timed
            and not job.cancelled
            and not job.handle.done()
            for job in self._jobs
        )
        if spec.kind in ("hang", "ignore_cancel") and hanging >= self.config.max_executors - 1:
            spec = Fault("sleep", 0.0)
        spec = attrs.evolve(spec, witness=self.witness.address)

        async def submit() -> JobHandle:
            return await self.pool.submit(spec, timeout=TIMED if timed else None)

        handle = self._call(submit, within=self._step_bound(), what=f"submit({spec})")
        self._jobs.append(_Job(handle, spec, timed=timed))
        self._log(f"submit({spec}{', timeout=TIMED' if timed else ''}) -> {handle.id}")

    # Preconditions read only what the draws decide (how many submits were drawn), never
    # what happened in real time: Hypothesis replays a run from its draws alone.
    @precondition(lambda self: self._submits > 0)
    @rule(number=st.integers(0, 50))
    def cancel(self, number: int) -> None:
        job = self._pick(number, lambda job: True)
        if job is None or not self._live():
            return
        job.cancelled = True

        async def cancel() -> None:
            job.handle.cancel()

        self._call(cancel, within=self._step_bound(), what=f"cancel({job.handle.id})")
        self._log(f"cancel({job.handle.id})")

    @precondition(lambda self: self._submits > 0 and self.capabilities.isolates_crashes)
    @rule(number=st.integers(0, 50))
    def kill_from_outside(self, number: int) -> None:
        """SIGKILL the process where a running job's body began."""
        if not self._live():
            return
        job = self._pick(
            number,
            lambda job: not job.handle.done() and self.witness.began(job.handle.id) is not None,
        )
        if job is None:
            return
        began = self.witness.began(job.handle.id)
        assert began is not None
        if began.pid is None or began.pid == os.getpid():
            return
        job.killed = True
        self._log(f"kill_from_outside({job.handle.id}, pid {began.pid})")
        try:
            os.kill(began.pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    @precondition(lambda self: self._submits > 0)
    @rule(number=st.integers(0, 50))
    def await_outcome(self, number: int) -> None:
        """Wait for a job that must end on its own: the pool keeps serving."""
        if not self._live():
            return
        job = self._pick(
            number,
            lambda job: (
                job.fault.kind not in ("hang", "ignore_cancel")
                or job.cancelled
                or job.timed
                or job.killed
            ),
        )
        if job is None:
            return
        self._log(f"await_outcome({job.handle.id})")
        within = self._step_bound() + self.config.close_timeout + 1.0
        self._call(job.handle.outcome, within=within, what=f"the outcome of {job.handle.id}")

    @rule(idle=st.integers(0, 3))
    def set_idle(self, idle: int) -> None:
        if not self._live():
            return
        self._log(f"set_idle({idle})")

        async def set_idle() -> None:
            self.pool.set_idle_executors(min(idle, self.config.max_executors))

        self._call(set_idle, within=self._step_bound(), what="set_idle_executors()")

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.05]))
    def pause(self, seconds: float) -> None:
        if not self._live():
            return
        self._log(f"pause({seconds})")
        self._call(anyio.sleep, seconds, within=seconds + MARGIN, what="pause")

    @rule()
    def drain_and_reopen(self) -> None:
        if not self._live():
            return
        self._log("drain_and_reopen()")
        self._drain_and_check()
        self._open_pool()

    def teardown(self) -> None:
        try:
            if self._holder is not None and self._loop is not None and not self.loop.abandoned:
                if self._failed:  # close without checking: the first failure is the one
                    with contextlib.suppress(AssertionError):
                        self._close_pool()
                else:
                    self._drain_and_check()
        finally:
            self._exit()

    # -- invariants ---------------------------------------------------------------------

    def _snapshot_now(self) -> _Snapshot:
        recorder = self._recorder
        return _Snapshot(
            finished=dict(recorder.finished),
            started=dict(recorder.started),
            outcomes=dict(recorder.outcomes),
            overlaps=list(recorder.overlaps),
            peak_live=recorder.peak_live,
            done={job.handle.id for job in self._jobs if job.handle.done()},
            live=None if self._holder is None or self._holder.pool is None else _live(self.pool),
            abandoned={
                job_id
                for job_id, outcome in recorder.outcomes.items()
                if recorder.closed_reasons.get(outcome.executor_id or "") == "abandoned"
            },
            killed=sorted(e for e, why in recorder.closed_reasons.items() if why == "killed"),
        )

    def _snapshot(self) -> _Snapshot:
        """What the recorder and the pool say, read at one instant on the pool's loop."""

        async def read() -> _Snapshot:
            return self._snapshot_now()

        return self._call(read, within=self._step_bound(), what="reading the pool")

    @invariant()
    def invariants_hold(self) -> None:
        """Every invariant, on one snapshot of the pool taken after the step."""
        if self._loop is None or self._failed or self._idle:
            return
        now = self._snapshot()
        self._one_outcome_per_job(now)
        self._one_job_per_executor(now)
        self._launches_within_attempts(now)
        self._executors_within_max(now)
        self._outcomes_match_jobs(now)
        self._contract_kept(now)
        self._witnessed(now)

    def _contract_kept(self, now: _Snapshot) -> None:
        """The pool killed no executor for breaking the contract (its run_job raised, or
        answered with another job's outcome: the pool's log says which)."""
        if now.killed:
            self._fail(
                "contract_kept",
                f"the pool killed {', '.join(now.killed)} for breaking the contract: "
                "run_job raised, or answered a job with another job's outcome",
            )

    def _one_outcome_per_job(self, now: _Snapshot) -> None:
        """Invariant 1: no job is reported twice; a finished job was reported once."""
        for job_id, count in now.finished.items():
            if count > 1:
                self._fail("one_outcome_per_job", f"{job_id} was reported {count} times")
        for job_id in now.done:
            if now.finished.get(job_id) != 1:
                self._fail("one_outcome_per_job", f"{job_id} ended but was not reported")

    def _one_job_per_executor(self, now: _Snapshot) -> None:
        """Invariant 2: no executor runs two jobs at once (as the hooks tell)."""
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
                problem = _mismatch(job, outcome, self._draining, self.capabilities)
                if problem:
                    self._fail("outcomes_match_jobs", f"{job.handle.id} ({job.fault}) {problem}")

    def _witnessed(self, now: _Snapshot) -> None:
        """Invariants 2 and 5, and no job code after its outcome, as the jobs' own
        reports show them (a job abandoned by a backend that cannot kill may run on)."""
        self.witness.settle()
        problems = self.witness.problems(may_run_on=now.abandoned)
        if problems:
            self._fail("witnessed", "; ".join(problems))


@attrs.frozen
class _Snapshot:
    finished: dict[str, int]
    started: dict[str, int]
    outcomes: dict[str, JobOutcome]
    overlaps: list[str]
    peak_live: int
    done: set[str]
    live: int | None
    #: jobs whose executor was closed "abandoned"
    abandoned: set[str]
    #: executors the pool killed for breaking the contract (closed "killed")
    killed: list[str]


async def loop_event() -> anyio.Event:
    """An event of the loop this runs on."""
    return anyio.Event()


def _registry_of(backend: WatchedBackend) -> Registry:
    from ..._plugins import Registry

    registry = Registry.empty()
    registry.add_backend(backend)
    return registry


def _live(pool: Pool) -> int:
    stats = pool.statistics()
    return stats.idle + stats.busy + stats.starting + stats.closing


def _mismatch(job: _Job, outcome: JobOutcome, draining: bool, caps: Capabilities) -> str | None:
    """What is wrong with ``outcome`` for ``job``, or None."""
    spec = job.fault
    stopped = job.cancelled or draining or job.timed or job.killed
    if outcome.status is JobStatus.SUCCEEDED:
        if spec.kind == "hang" and stopped and outcome.value is None:
            return None  # a sync job returns early once asked to stop
        if not spec.succeeds:
            return f"succeeded with {outcome.value!r}, but it never returns"
        if outcome.value != spec.expected:
            return f"succeeded with {outcome.value!r}, expected {spec.expected!r}"
        return None
    allowed: set[FailureReason] = set()
    if spec.kind == "raise":
        allowed.add(FailureReason.RAISED)
    elif spec.kind == "raise_base":
        allowed.add(FailureReason.RAISED)
        if caps.isolates_crashes:
            allowed.add(FailureReason.CRASHED)
    elif spec.kind == "crash":
        allowed.add(FailureReason.CRASHED)
    if job.cancelled:
        allowed |= _CANCELLED
    if job.timed:
        allowed.add(FailureReason.TIMED_OUT)
    if job.killed:
        allowed |= _KILLED
    if draining:
        allowed |= _DRAINED
    if outcome.reason not in allowed:
        expected = " or ".join(sorted(r.value for r in allowed)) or "success"
        why = f" ({outcome.error})" if outcome.error is not None else ""
        reason = outcome.reason.value if outcome.reason else outcome.status.value
        return f"ended {reason}{why}, expected {expected}"
    if outcome.reason is FailureReason.RAISED:
        error = outcome.error
        if spec.kind == "raise" and (error is None or error.message != spec.value):
            return f"raised {error!r}, expected InjectedFault({spec.value!r})"
        if spec.kind == "raise_base" and (
            error is None or not error.type_name.endswith(str(spec.value))
        ):
            return f"raised {error!r}, expected a {spec.value}"
    return None
