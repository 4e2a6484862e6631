"""The pool as a pure, synchronous state machine.

Events go in (a job was submitted, a spawn failed, a job ended...), actions come out
(spawn an executor after a delay, launch this job on that executor, close that one...).
Nothing here awaits, sleeps, reads a clock or touches an executor: the async driver in
``_pool`` performs the actions and feeds the results back as events. Keeping every
decision in one synchronous place is what makes the invariants of the pool checkable
by Hypothesis at thousands of steps a second (see ``tests/test_pool_state.py``).

Vocabulary: an executor is *live* from the moment its spawn is decided until its close
has finished; it is STARTING (its spawn is in flight, backoff delay included), IDLE,
BUSY (running exactly one job) or CLOSING. A job is *waiting* from its acceptance until
an executor is assigned to it, then *running* until its run ends; it is *finished* once
its one outcome is decided, and is then forgotten.
"""

from __future__ import annotations

import collections
import enum
import random
from collections import deque
from typing import TYPE_CHECKING

import attrs

from ._exceptions import LaunchError
from ._job import FailureReason, JobStatus, status_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._executor import Health
    from ._job import JobOutcome


class Slot(enum.Enum):
    """What the pool knows of one executor."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    CLOSING = "closing"

    # Members are singletons: identity hashing is enough, and runs in C (Enum's own
    # __hash__ is Python code, called several times a job by the slot counters).
    __hash__ = object.__hash__


class CloseReason(enum.Enum):
    """Why the pool closes an executor (passed to the ``executor_closed`` hook).

    Only ``BROKEN`` means the executor failed by itself (it died, or was not ready after
    a job nobody stopped); every other reason says what the pool did, or why: a limit, a
    stopped job, a spawn or launch that failed, a contract broken (``KILLED``), a job
    that ignored cancellation (``ABANDONED``).
    """

    RECYCLED = "recycled"
    IDLE_SURPLUS = "idle_surplus"
    SPAWN_FAILED = "spawn_failed"
    BROKEN = "broken"
    LAUNCH_FAILED = "launch_failed"
    UNRESPONSIVE = "unresponsive"
    MEMORY_LIMIT = "memory_limit"
    POOL_CLOSED = "pool_closed"
    ABANDONED = "abandoned"
    #: its job ran past its timeout, and stopping the job stopped the executor
    TIMED_OUT = "timed_out"
    #: its job was cancelled, and stopping the job stopped the executor
    CANCELLED = "cancelled"
    #: the pool killed it: it broke the contract (``run_job`` raised, or answered with
    #: another job's outcome)
    KILLED = "killed"


class Admission(enum.Enum):
    """What becomes of a job offered to the pool now (see :meth:`PoolState.admission`)."""

    ACCEPT = "accept"
    #: ``max_pending`` jobs wait and ``when_full = "wait"``: offer it again at the next change
    WAIT = "wait"
    #: ``max_pending`` jobs wait and ``when_full = "reject"``
    FULL = "full"
    #: the pool drains: it accepts no new job
    CLOSED = "closed"


#: the executor's close reason when the pool stopped its run for this reason and that
#: stopped the executor too
_CLOSE_REASON_OF_STOP = {
    FailureReason.POOL_CLOSED: CloseReason.POOL_CLOSED,
    FailureReason.TIMED_OUT: CloseReason.TIMED_OUT,
    FailureReason.CANCELLED: CloseReason.CANCELLED,
    FailureReason.UNRESPONSIVE: CloseReason.UNRESPONSIVE,
    FailureReason.MEMORY_LIMIT: CloseReason.MEMORY_LIMIT,
    FailureReason.CRASHED: CloseReason.KILLED,
}


# -- actions -------------------------------------------------------------------------


@attrs.frozen
class SpawnExecutor:
    """Create executor ``executor_id`` and start it, after sleeping ``delay`` seconds."""

    executor_id: str
    delay: float


# LaunchJob and EndJob are made once a job: not frozen, as a frozen attrs class's
# __init__ costs a call per field. Nothing changes an action once made.
@attrs.define
class LaunchJob:
    """Run job ``job_id`` on the idle executor ``executor_id``."""

    job_id: str
    executor_id: str
    attempt: int
    #: the run holds a cancel scope (see ``submit``)
    scoped: bool = True


@attrs.frozen
class CancelJob:
    """Cancel the run of job ``job_id`` through its cancel scope: a run that began ends
    later with ``run_ended``, one not yet begun with ``run_not_started``."""

    job_id: str
    executor_id: str
    reason: FailureReason


@attrs.frozen
class KillExecutor:
    """Kill ``executor_id`` now, abandoning its job if it runs one (the backend then ends
    that run promptly); report ``kill_done`` after."""

    executor_id: str
    reason: FailureReason
    #: what the executor did, where it broke the contract
    detail: str = ""


@attrs.define
class EndJob:
    """The run of ``job_id`` on ``executor_id`` is over: deliver its outcome, with this
    status and reason. ``outcome`` is what ``run_job`` returned (None: the run was
    cancelled, or never started); its value and error are kept. ``error``, where set,
    is the error to report instead (the backend broke the contract)."""

    job_id: str
    executor_id: str
    status: JobStatus
    reason: FailureReason | None
    attempt: int
    outcome: JobOutcome | None
    error: BaseException | None = None


@attrs.frozen
class WarnMemory:
    """``executor_id`` uses ``memory_mb``, over ``memory_warn_mb`` (at most once a minute)."""

    executor_id: str
    memory_mb: float


@attrs.frozen
class CancelSpawn:
    """Abandon the in-flight spawn of ``executor_id`` (it ends with ``spawn_failed``)."""

    executor_id: str


@attrs.frozen
class CloseExecutor:
    """Close ``executor_id`` (gracefully, then kill); report ``executor_closed`` after."""

    executor_id: str
    reason: CloseReason


@attrs.frozen
class FinishJob:
    """Job ``job_id`` ends without having run to its end on an executor."""

    job_id: str
    reason: FailureReason
    error: BaseException | None = None
    #: executors the job was launched on before it ended this way
    attempts: int = 0


@attrs.frozen
class ReportUnhealthy:
    """Spawns failed ``consecutive_failures`` times in a row."""

    consecutive_failures: int
    error: BaseException | None


Action = (
    SpawnExecutor
    | LaunchJob
    | CancelJob
    | KillExecutor
    | CancelSpawn
    | CloseExecutor
    | EndJob
    | FinishJob
    | ReportUnhealthy
    | WarnMemory
)


# -- state -----------------------------------------------------------------------------


@attrs.define
class ExecutorRecord:
    id: str
    slot: Slot
    # jobs this executor has run to an end; counts toward max_jobs_per_executor
    jobs_done: int = 0
    # Invariant: job_id is not None exactly when slot is BUSY.
    job_id: str | None = None
    # Why the pool killed it while busy (its run's outcome then has this reason); None
    # while nobody killed it. A killed executor is never reused.
    kill_reason: FailureReason | None = None
    # a KillExecutor of it has not reported kill_done yet
    killing: bool = False
    # when memory_warn_mb was last reported for it
    memory_warned_at: float | None = None


@attrs.define
class JobRecord:
    id: str
    # None while waiting; the executor running it otherwise
    executor_id: str | None = None
    # launches so far: 1 on the first executor, +1 per LaunchError retry
    launches: int = 0
    # acquisition cycles that ended with every spawn failed while this job waited
    failed_cycles: int = 0
    # The acquisition cycle this job waits on. Invariant: set exactly while waiting.
    cycle: Cycle | None = None
    # Its runs hold a cancel scope (else a run is stopped by killing its executor).
    scoped: bool = True
    # Its own memory limit (MiB), besides the pool's: the executor running it is killed
    # above the lower of the two.
    memory_limit_mb: float | None = None


@attrs.define(eq=False)
class Cycle:
    """One acquisition cycle, shared by the jobs that began waiting while it was open.

    Spawns join the open cycle until one of its members fails; the cycle is then sealed
    and fails when its last member fails. Spawns begun after the seal belong to the next
    cycle, so a pool that keeps respawning cannot keep a job waiting forever, and a peer
    spawn still in flight never burns an attempt.
    """

    # Invariant: a subset of the spawns in flight.
    spawns: set[str]
    jobs: set[str] = attrs.field(factory=set)
    sealed: bool = False


@attrs.frozen
class Limits:
    """The knobs of :class:`~executors.PoolConfig` the state machine decides with."""

    idle_executors: int = 1
    max_executors: int = 4
    max_concurrent_initializations: int = 2
    max_jobs_per_executor: int | None = None
    acquire_attempts: int = 3
    launch_attempts: int = 3
    spawn_backoff: float = 0.1
    spawn_backoff_max: float = 10.0
    consecutive_failure_limit: int = 5
    ping_timeout: float = 30.0
    memory_limit_mb: float | None = None
    memory_warn_mb: float | None = None
    max_pending: int | None = None
    when_full: str = "wait"


@attrs.define
class Counts:
    """Counters of everything that has happened, for statistics. The outcome counters
    are named after the :class:`JobStatus` values they count."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    spawn_failures: int = 0
    executors_started: int = 0


@attrs.define(eq=False)
class PoolState:
    """Decides what the pool does. Every public method is an event and returns the
    actions to perform, in order. Methods never raise for well-formed event sequences;
    an impossible event (a job ending on an executor it was never launched on) raises
    ``AssertionError``, because it means the driver lost track of something.
    """

    limits: Limits
    rng: random.Random = attrs.field(factory=random.Random)
    id_prefix: str = "ex"

    # Invariant: every live executor has exactly one record here.
    executors: dict[str, ExecutorRecord] = attrs.field(init=False, factory=dict)
    # Ready executors, oldest first: jobs take the newest, surplus closes the oldest.
    # Invariant: the ids of IDLE records, no others.
    idle: deque[str] = attrs.field(init=False, factory=deque)
    # Accepted, unfinished jobs. Invariant: a job is in `waiting` iff its record has no
    # executor_id, and it is the job_id of exactly one BUSY record otherwise.
    jobs: dict[str, JobRecord] = attrs.field(init=False, factory=dict)
    waiting: deque[str] = attrs.field(init=False, factory=deque)
    idle_target: int = attrs.field(init=False)
    draining: bool = attrs.field(init=False, default=False)
    aborted: bool = attrs.field(init=False, default=False)
    consecutive_failures: int = attrs.field(init=False, default=0)
    last_spawn_error: BaseException | None = attrs.field(init=False, default=None)
    counts: Counts = attrs.field(init=False, factory=Counts)
    # Invariant: _slots[slot] == number of records in that slot (kept by _move).
    _slots: collections.Counter[Slot] = attrs.field(init=False, factory=collections.Counter)
    # The cycle new waiting jobs join; None when no job waits on an open cycle.
    _open_cycle: Cycle | None = attrs.field(init=False, default=None)
    # Spawn id -> the cycles it is a member of (at most a few).
    _cycles_of: dict[str, list[Cycle]] = attrs.field(init=False, factory=dict)
    # Running job -> why the pool stopped its run (the first reason stands). Kept here,
    # not in the records, like the breaches: few jobs have one, and every running job
    # holds its record.
    _stops: dict[str, FailureReason] = attrs.field(init=False, factory=dict)
    # Running job -> the error it ends with once its executor, which broke the contract
    # during its run, is dead.
    _breaches: dict[str, BaseException] = attrs.field(init=False, factory=dict)
    _serial: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.idle_target = self.limits.idle_executors

    # -- queries -------------------------------------------------------------------------

    def count(self, slot: Slot) -> int:
        return self._slots[slot]

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures < self.limits.consecutive_failure_limit

    def supervised(self) -> list[str]:
        """The executors whose health the supervisor reports: the idle and busy ones."""
        return [r.id for r in self.executors.values() if r.slot in (Slot.IDLE, Slot.BUSY)]

    def supervises(self, executor_id: str) -> bool:
        record = self.executors.get(executor_id)
        return record is not None and record.slot in (Slot.IDLE, Slot.BUSY)

    @property
    def settled(self) -> bool:
        """No job and no executor left: a draining pool is done."""
        return not self.jobs and not self.executors

    # -- events ----------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """The pool opened: warm up to the idle target."""
        return self._rebalance()

    def admission(self) -> Admission:
        """Whether a job offered now is accepted (backpressure): the driver asks before
        each ``submit``, and waits for the next change of state on ``WAIT``."""
        limit = self.limits.max_pending
        if self.draining:
            return Admission.CLOSED
        if limit is None or len(self.waiting) < limit:
            return Admission.ACCEPT
        return Admission.WAIT if self.limits.when_full == "wait" else Admission.FULL

    def submit(
        self, job_id: str, scoped: bool = True, memory_limit_mb: float | None = None
    ) -> list[Action]:
        """Job ``job_id`` was accepted (``admission()`` said ``ACCEPT``). ``scoped``: its
        runs hold a cancel scope; without one, a run is stopped by killing its executor
        (the contract's ``kill()`` ends a run promptly). ``memory_limit_mb``: its own
        limit, applied with the pool's while it runs."""
        assert not self.draining, "submit after drain"
        assert job_id not in self.jobs, f"job {job_id} submitted twice"
        job = self.jobs[job_id] = JobRecord(job_id, scoped=scoped, memory_limit_mb=memory_limit_mb)
        self.waiting.append(job_id)
        if not self.idle:
            # It will wait (with an idle executor, _assign hands it over at once).
            self._join_cycle(job)
        return self._rebalance()

    def may_start(self, job_id: str) -> bool:
        """Whether the run of ``job_id``, launched and not yet begun, may begin: not once
        it was cancelled (the driver then reports ``run_not_started``)."""
        return job_id not in self._stops

    def spawn_succeeded(self, executor_id: str) -> list[Action]:
        record = self._expect(executor_id, Slot.STARTING)
        self.consecutive_failures = 0
        self.counts.executors_started += 1
        if self.aborted:
            return [self._close(record, CloseReason.POOL_CLOSED)]
        self._move(record, Slot.IDLE)
        self.idle.append(executor_id)
        for cycle in self._cycles_of.pop(executor_id, ()):
            cycle.spawns.discard(executor_id)
            if cycle.sealed and not cycle.spawns:
                # Its last member started: no failure to count, its jobs wait afresh.
                for job_id in list(cycle.jobs):
                    self._join_cycle(self.jobs[job_id])
        return self._rebalance()

    def spawn_failed(self, executor_id: str, error: BaseException | None) -> list[Action]:
        """The spawn failed, timed out or was cancelled; the driver must still close it."""
        record = self._expect(executor_id, Slot.STARTING)
        actions: list[Action] = [self._close(record, CloseReason.SPAWN_FAILED)]
        if self.aborted:
            return actions
        self.consecutive_failures += 1
        self.last_spawn_error = error
        self.counts.spawn_failures += 1
        if self.consecutive_failures == self.limits.consecutive_failure_limit:
            actions.append(ReportUnhealthy(self.consecutive_failures, error))
        actions.extend(self._settle_cycles(executor_id, error))
        return actions + self._rebalance()

    def run_ended(
        self,
        job_id: str,
        executor_id: str,
        outcome: JobOutcome | None,
        reusable: bool,
        abandoned: bool = False,
    ) -> list[Action]:
        """The run of ``job_id`` on ``executor_id`` returned ``outcome``, or was cancelled
        (None: by the pool, for the reason it stopped it, else by its deadline).

        ``reusable``: the executor is READY again. ``abandoned``: it is not, because it
        gave up a job that ignored cancellation (``Health.abandoned``).
        """
        record = self._expect(executor_id, Slot.BUSY)
        assert record.job_id == job_id, f"job {job_id} ended on {executor_id}, not its executor"
        job = self.jobs[job_id]
        if outcome is not None and outcome.job_id != job_id:
            msg = (
                f"executor {executor_id} answered job {job_id} with the outcome of job "
                f"{outcome.job_id}"
            )
            return self._breached(job, record, RuntimeError(msg))
        stop = record.kill_reason or self._stops.get(job_id)
        if outcome is None:
            # cancelled: by a request (its reason), else by the deadline
            reason: FailureReason | None = stop or FailureReason.TIMED_OUT
            status = status_of(reason)
            stop = reason
        else:
            status, reason = outcome.status, outcome.reason
            if record.kill_reason is not None and status is not JobStatus.SUCCEEDED:
                # the kill the pool meant, not the crash the backend saw
                reason = record.kill_reason
                status = status_of(reason)
        end = EndJob(job_id, executor_id, status, reason, job.launches, outcome)
        if reusable and record.kill_reason is None:
            return self._job_left([end], record, status)
        if abandoned:
            close = CloseReason.ABANDONED
        elif stop is not None:
            close = _CLOSE_REASON_OF_STOP.get(stop, CloseReason.KILLED)
        else:
            close = CloseReason.BROKEN
        return self._job_left([end], record, status, close)

    def run_interrupted(
        self, job_id: str, executor_id: str, *, reusable: bool, abandoned: bool = False
    ) -> list[Action]:
        """The run was cancelled from outside the pool (the caller of ``Pool.run()`` was
        cancelled: the job ran in its task). The job still gets its one outcome."""
        self._stops.setdefault(job_id, FailureReason.CANCELLED)
        return self.run_ended(job_id, executor_id, None, reusable=reusable, abandoned=abandoned)

    def run_not_started(self, job_id: str, executor_id: str) -> list[Action]:
        """A launch the driver did not begin: the job was cancelled before it could start
        (``may_start`` said no, or its ``Pool.run()`` caller was cancelled meanwhile).
        The job ends with that reason; the executor, which ran nothing, is kept."""
        record = self._expect(executor_id, Slot.BUSY)
        assert record.job_id == job_id, f"job {job_id} launched on {executor_id}, not its executor"
        job = self.jobs[job_id]
        reason = self._stops.get(job_id, FailureReason.CANCELLED)
        status = status_of(reason)
        end = EndJob(job_id, executor_id, status, reason, job.launches, None)
        close = None
        if record.kill_reason is not None:
            close = _CLOSE_REASON_OF_STOP.get(record.kill_reason, CloseReason.KILLED)
        return self._job_left([end], record, status, close, ran=False)

    def run_raised(self, job_id: str, executor_id: str, error: Exception) -> list[Action]:
        """``run_job`` raised ``error``. A :class:`LaunchError` means the executor refused
        the job and ran none of it: it goes back in line (or fails after
        ``launch_attempts``). Anything else breaks the contract: the job may have run, so
        it is not retried; the executor is killed, and the job then ends CRASHED."""
        record = self._expect(executor_id, Slot.BUSY)
        assert record.job_id == job_id, f"job {job_id} launched on {executor_id}, not its executor"
        if not isinstance(error, LaunchError):
            return self._breached(self.jobs[job_id], record, error)
        record.job_id = None
        actions: list[Action] = [self._close(record, CloseReason.LAUNCH_FAILED)]
        job = self.jobs[job_id]
        job.executor_id = None
        if self.aborted:
            actions.append(self._finish(job_id, FailureReason.POOL_CLOSED, None))
        elif job_id in self._stops:
            actions.append(self._finish(job_id, self._stops[job_id], None))
        elif job.launches >= self.limits.launch_attempts:
            actions.append(self._finish(job_id, FailureReason.LAUNCH_FAILED, error))
        else:
            # It never ran, so running it elsewhere is safe; it keeps its place in line.
            self.waiting.appendleft(job_id)
            self._join_cycle(job)
        return actions + self._rebalance()

    def kill_done(self, executor_id: str) -> list[Action]:
        """A ``KillExecutor`` returned. A run the kill was for ends by itself (the backend
        returns its outcome); a run whose executor broke the contract ends now."""
        record = self.executors.get(executor_id)
        if record is None:
            return []
        record.killing = False
        if record.slot is not Slot.BUSY:
            return []
        assert record.job_id is not None
        job = self.jobs[record.job_id]
        error = self._breaches.pop(job.id, None)
        if error is None:
            return []
        status = JobStatus.FAILED
        end = EndJob(job.id, executor_id, status, FailureReason.CRASHED, job.launches, None, error)
        return self._job_left([end], record, status, CloseReason.KILLED)

    def health_checked(self, executor_id: str, health: Health, now: float) -> list[Action]:
        """The supervisor read ``health`` of ``executor_id`` at ``now`` (seconds of the
        pool's clock). An idle executor that is dead or over a limit is closed; a busy one
        still alive is killed (its run then ends with the problem as its reason); a busy
        one that died ends its run by itself."""
        record = self.executors.get(executor_id)
        if record is None or record.slot not in (Slot.IDLE, Slot.BUSY):
            return []
        limits = self.limits
        problem: FailureReason | None = None
        if not health.alive:
            problem = FailureReason.CRASHED
        elif health.ping_latency is not None and health.ping_latency > limits.ping_timeout:
            problem = FailureReason.UNRESPONSIVE
        elif health.memory_mb is not None:
            limit = self._memory_limit(record)
            if limit is not None and health.memory_mb > limit:
                problem = FailureReason.MEMORY_LIMIT
            elif limits.memory_warn_mb is not None and health.memory_mb > limits.memory_warn_mb:
                # At most once a minute per executor: a leaking job would flood the log.
                last = record.memory_warned_at
                if last is None or now - last >= 60.0:
                    record.memory_warned_at = now
                    return [WarnMemory(executor_id, health.memory_mb)]
        if problem is None:
            return []
        if record.slot is Slot.IDLE:
            # dead by itself: broken; over a limit: closed for that limit
            close = (
                CloseReason.BROKEN
                if problem is FailureReason.CRASHED
                else _CLOSE_REASON_OF_STOP[problem]
            )
            self.idle.remove(executor_id)
            return [self._close(record, close), *self._rebalance()]
        if not health.alive or record.kill_reason is not None:
            return []
        return [self._kill(record, problem)]

    def _memory_limit(self, record: ExecutorRecord) -> float | None:
        """The memory limit ``record`` is held to: the pool's, and its job's if lower."""
        limit = self.limits.memory_limit_mb
        if record.job_id is not None:
            own = self.jobs[record.job_id].memory_limit_mb
            if own is not None and (limit is None or own < limit):
                return own
        return limit

    def executor_closed(self, executor_id: str) -> list[Action]:
        self._expect(executor_id, Slot.CLOSING)
        del self.executors[executor_id]
        self._slots[Slot.CLOSING] -= 1
        return self._rebalance()

    def cancel(self, job_id: str, reason: FailureReason = FailureReason.CANCELLED) -> list[Action]:
        """Stop ``job_id`` wherever it is. A finished or unknown job is left alone, and a
        run already being stopped keeps its first reason."""
        job = self.jobs.get(job_id)
        if job is None:
            return []
        if job.executor_id is None:
            self.waiting.remove(job_id)
            self._leave_cycle(job)
            return [self._finish(job_id, reason, None), *self._rebalance()]
        if job_id in self._stops:
            return []
        self._stops[job_id] = reason
        if job.scoped:
            return [CancelJob(job_id, job.executor_id, reason)]
        record = self.executors[job.executor_id]
        if record.kill_reason is not None:
            return []
        return [self._kill(record, reason)]

    def set_idle_target(self, idle_executors: int) -> list[Action]:
        if not 0 <= idle_executors <= self.limits.max_executors:
            msg = (
                f"idle_executors = {idle_executors} is invalid: must be between 0 and "
                f"max_executors ({self.limits.max_executors})"
            )
            raise ValueError(msg)
        self.idle_target = idle_executors
        return self._rebalance()

    def drain(self) -> list[Action]:
        """Refuse new jobs; waiting and running jobs still run; no executor is kept idle."""
        self.draining = True
        return self._rebalance()

    def abort(self) -> list[Action]:
        """Drain ran out of time: end every job and stop every executor now."""
        self.draining = self.aborted = True
        for job_id in self.waiting:
            self._leave_cycle(self.jobs[job_id])
        actions: list[Action] = [
            self._finish(job_id, FailureReason.POOL_CLOSED, None) for job_id in self.waiting
        ]
        self.waiting.clear()
        for record in list(self.executors.values()):
            if record.slot is Slot.BUSY:
                assert record.job_id is not None
                actions.extend(self.cancel(record.job_id, FailureReason.POOL_CLOSED))
            elif record.slot is Slot.STARTING:
                actions.append(CancelSpawn(record.id))
        return actions + self._rebalance()

    # -- decisions -------------------------------------------------------------------------

    def _rebalance(self, actions: list[Action] | None = None) -> list[Action]:
        """Hand idle executors to waiting jobs, close the surplus, spawn what is missing;
        ``actions`` (the event's own, if any) with those appended."""
        # Each step appends its actions, and returns at once when it has nothing to do:
        # no generator is made, and this runs twice a job.
        if actions is None:
            actions = []
        if self.waiting and self.idle:
            self._assign(actions)
        keep = 0 if self.draining else self.idle_target
        if len(self.idle) > keep:
            self._close_surplus(actions, keep)
        # Spawn toward `keep` idle executors beyond the waiting jobs, as room allows.
        starting = self._slots[Slot.STARTING]
        wanted = len(self.waiting) + keep - len(self.idle) - starting
        if wanted > 0 and not self.aborted:
            limits = self.limits
            room = min(
                limits.max_executors - len(self.executors),
                limits.max_concurrent_initializations - starting,
            )
            if room > 0:
                self._spawn(actions, min(wanted, room))
        return actions

    def _assign(self, actions: list[Action]) -> None:
        while self.waiting and self.idle:
            job = self.jobs[self.waiting.popleft()]
            self._leave_cycle(job)
            # The newest idle executor, the one that ran last: its process or thread is
            # the warmest (caches, pages, scheduler), and the oldest idle ones are the
            # first closed as surplus.
            record = self.executors[self.idle.pop()]
            self._move(record, Slot.BUSY)
            record.job_id = job.id
            job.executor_id = record.id
            job.launches += 1
            actions.append(LaunchJob(job.id, record.id, job.launches, job.scoped))

    def _close_surplus(self, actions: list[Action], keep: int) -> None:
        # _assign ran first, so idle executors and waiting jobs never coexist here.
        while len(self.idle) > keep:
            # Close the oldest: the newest are the warmest.
            record = self.executors[self.idle.popleft()]
            actions.append(self._close(record, CloseReason.IDLE_SURPLUS))

    def _spawn(self, actions: list[Action], count: int) -> None:
        delay = self._backoff()
        for _ in range(count):
            self._serial += 1
            executor_id = f"{self.id_prefix}-{self._serial}"
            self.executors[executor_id] = ExecutorRecord(executor_id, Slot.STARTING)
            self._slots[Slot.STARTING] += 1
            if self._open_cycle is not None:
                self._add_to_cycle(self._open_cycle, executor_id)
            actions.append(SpawnExecutor(executor_id, delay))

    def _backoff(self) -> float:
        """Exponential in consecutive failures, capped, with jitter in [50%, 100%]."""
        if self.consecutive_failures == 0:
            return 0.0
        limits = self.limits
        exponent = min(self.consecutive_failures - 1, 62)
        ceiling = min(limits.spawn_backoff_max, limits.spawn_backoff * 2.0**exponent)
        return ceiling * self.rng.uniform(0.5, 1.0)

    def _settle_cycles(self, executor_id: str, error: BaseException | None) -> Iterator[Action]:
        """A spawn failed: it seals its cycles; a cycle whose last member it was has
        failed once for each of its jobs, unless an executor is busy: that one comes back
        to serve the waiting jobs, which then wait for it as they would in a full pool."""
        serving = self._slots[Slot.BUSY] > 0
        for cycle in self._cycles_of.pop(executor_id, ()):
            cycle.spawns.discard(executor_id)
            cycle.sealed = True
            if cycle is self._open_cycle:
                self._open_cycle = None
            if cycle.spawns:
                continue
            failing = set()
            for job_id in list(cycle.jobs):
                job = self.jobs[job_id]
                if not serving:
                    job.failed_cycles += 1
                if job.failed_cycles >= self.limits.acquire_attempts:
                    self._leave_cycle(job)
                    failing.add(job_id)
                else:
                    self._join_cycle(job)
            if failing:
                self.waiting = deque(j for j in self.waiting if j not in failing)
                for job_id in sorted(failing, key=self._order_of(failing).__getitem__):
                    yield self._finish(job_id, FailureReason.ACQUIRE_FAILED, error)

    def _order_of(self, job_ids: set[str]) -> dict[str, int]:
        # submission order, so outcomes are reported in the order jobs came
        return {job_id: i for i, job_id in enumerate(self.jobs) if job_id in job_ids}

    def _join_cycle(self, job: JobRecord) -> None:
        self._leave_cycle(job)
        cycle = self._open_cycle
        if cycle is None:
            cycle = self._open_cycle = Cycle(set())
            for record in self.executors.values():
                if record.slot is Slot.STARTING:
                    self._add_to_cycle(cycle, record.id)
        cycle.jobs.add(job.id)
        job.cycle = cycle

    def _leave_cycle(self, job: JobRecord) -> None:
        cycle, job.cycle = job.cycle, None
        if cycle is not None:
            cycle.jobs.discard(job.id)
            if not cycle.jobs and cycle is self._open_cycle:
                # Nobody waits on it: stop collecting spawns into it.
                self._open_cycle = None

    def _add_to_cycle(self, cycle: Cycle, executor_id: str) -> None:
        cycle.spawns.add(executor_id)
        self._cycles_of.setdefault(executor_id, []).append(cycle)

    # -- helpers ---------------------------------------------------------------------------

    def _job_left(
        self,
        actions: list[Action],
        record: ExecutorRecord,
        status: JobStatus,
        close: CloseReason | None = None,
        *,
        ran: bool = True,
    ) -> list[Action]:
        """The job of busy ``record`` has its outcome (``actions`` deliver it): forget it;
        the executor is closed for ``close``, or is idle again (or recycled, or closed by
        the drain's end). ``ran``: the job ran on it (counted toward
        ``max_jobs_per_executor``). Returns ``actions`` with what follows appended."""
        job_id = record.job_id
        assert job_id is not None
        del self.jobs[job_id]
        if self._stops:
            self._stops.pop(job_id, None)
        self._count_outcome(status)
        record.job_id = None
        record.kill_reason = None
        record.jobs_done += ran
        if close is None:
            limit = self.limits.max_jobs_per_executor
            if self.aborted:
                # the drain's end closes every executor, this one too: not a recycling
                close = CloseReason.POOL_CLOSED
            elif limit is not None and record.jobs_done >= limit:
                close = CloseReason.RECYCLED
            else:
                self._move(record, Slot.IDLE)
                self.idle.append(record.id)
                return self._rebalance(actions)
        actions.append(self._close(record, close))
        return self._rebalance(actions)

    def _breached(
        self, job: JobRecord, record: ExecutorRecord, error: BaseException
    ) -> list[Action]:
        """The executor of ``job`` broke the contract: it is killed before the job ends
        (so nothing of the job runs after its outcome), then the job ends CRASHED."""
        self._breaches[job.id] = error
        if record.killing:
            return []  # a kill is on its way: the job ends when it is done
        if record.kill_reason is not None:
            return self.kill_done(record.id)  # killed already
        detail = f"{type(error).__name__}: {error}"
        return [self._kill(record, FailureReason.CRASHED, detail)]

    def _kill(
        self, record: ExecutorRecord, reason: FailureReason, detail: str = ""
    ) -> KillExecutor:
        record.kill_reason = reason
        record.killing = True
        return KillExecutor(record.id, reason, detail)

    def _close(self, record: ExecutorRecord, reason: CloseReason) -> CloseExecutor:
        self._move(record, Slot.CLOSING)
        return CloseExecutor(record.id, reason)

    def _move(self, record: ExecutorRecord, slot: Slot) -> None:
        self._slots[record.slot] -= 1
        self._slots[slot] += 1
        record.slot = slot

    def _finish(self, job_id: str, reason: FailureReason, error: BaseException | None) -> FinishJob:
        job = self.jobs.pop(job_id)
        self._stops.pop(job_id, None)
        self._count_outcome(status_of(reason))
        return FinishJob(job_id, reason, error, job.launches)

    def _count_outcome(self, status: JobStatus) -> None:
        # _value_, the member's plain attribute: .value is a Python property (and an
        # Enum's hash Python code), and this runs once a job
        counter: str = status._value_
        setattr(self.counts, counter, getattr(self.counts, counter) + 1)

    def _expect(self, executor_id: str, slot: Slot) -> ExecutorRecord:
        record = self.executors.get(executor_id)
        assert record is not None, f"event for unknown executor {executor_id}"
        assert record.slot is slot, f"{executor_id} is {record.slot.name}, expected {slot.name}"
        return record
