"""The async driver of the pool: performs what ``_pool_state`` decides.

Every change of state happens in one synchronous call (``PoolState.<event>()``) that
returns actions; :meth:`Pool._perform` performs them (starting a task for those that
need awaiting) and reports what comes of them as the next events. The driver decides
nothing: timeouts are cancel scopes around backend calls, and nothing here sleeps to
wait for a condition.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.lowlevel
import attrs

from . import calls
from ._clock import cancel_scope_class, event_class, loop_clock
from ._config import LoadedConfig, PoolConfig, build_backend_options, load_config
from ._entrypoints import check_runnable, is_callable, resolve_callable
from ._exceptions import ConfigError, JobFailed, LaunchError, PoolClosed, PoolFull
from ._executor import ExecutorState
from ._handle import JobHandle, Percentiles, PoolStatistics, own_exception, result_of
from ._job import FailureReason, Job, JobOutcome, RemoteError
from ._mapping import MapResults
from ._observers import Observers
from ._plugins import Registry, default_registry
from ._pool_state import (
    Action,
    Admission,
    CancelJob,
    CancelSpawn,
    CloseExecutor,
    CloseReason,
    EndJob,
    FinishJob,
    KillExecutor,
    LaunchJob,
    Limits,
    PoolState,
    ReportUnhealthy,
    Slot,
    SpawnExecutor,
    WarnMemory,
)
from ._supervisor import supervise, watch_exit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._executor import Backend, Capabilities, ExecutorFactory, JobExecutor

__all__ = ["JobHandle", "Pool", "PoolStatistics", "open_pool"]

logger = logging.getLogger("executors.pool")

# Read once a job: an Enum member read off its class runs Python code on 3.11.
_READY, _ACCEPT = ExecutorState.READY, Admission.ACCEPT
#: how many of the most recent jobs PoolStatistics' queue_wait and run_time describe
LATENCY_SAMPLES = 1024

#: close reasons that say something went wrong with the executor (logged as warnings)
_TROUBLE = frozenset({CloseReason.BROKEN, CloseReason.UNRESPONSIVE, CloseReason.MEMORY_LIMIT})


class _NoScope:
    """What a run without a cancel scope is entered in. Its methods are static, so
    entering it makes no bound ``__exit__`` for the running frame to hold."""

    __slots__ = ()

    @staticmethod
    def __enter__() -> None:
        return None

    @staticmethod
    def __exit__(*exc_info: object) -> None:
        return None


_NO_SCOPE = _NoScope()


@attrs.define(eq=False)
class Pool:
    """A pool of executors from one backend. Create it with :func:`open_pool`."""

    name: str
    config: PoolConfig
    backend: Backend
    _factory: ExecutorFactory = attrs.field(repr=False)
    _tg: TaskGroup = attrs.field(repr=False)
    _observers: Observers = attrs.field(repr=False)
    _state: PoolState = attrs.field(init=False, repr=False)
    # Live executor objects. Invariant: a subset of _state.executors' ids (an id is in the
    # state from the spawn decision, here from create_executor() until its close ends).
    _executors: dict[str, JobExecutor] = attrs.field(init=False, factory=dict, repr=False)
    # Unfinished jobs. Invariant: same ids as _state.jobs.
    _handles: dict[str, JobHandle] = attrs.field(init=False, factory=dict, repr=False)
    # Cancel scopes of runs (made as a scoped run begins, dropped as it ends: see _begin)
    # and of spawns (made before their task, so a cancel that comes first still applies).
    _run_scopes: dict[str, anyio.CancelScope] = attrs.field(init=False, factory=dict, repr=False)
    _spawn_scopes: dict[str, anyio.CancelScope] = attrs.field(init=False, factory=dict, repr=False)
    # Set at the next change of state; None while nobody waits for one.
    _changed: anyio.Event | None = attrs.field(init=False, default=None, repr=False)
    _settled: anyio.Event = attrs.field(init=False, factory=anyio.Event, repr=False)
    # anyio.current_time(), anyio.CancelScope and anyio.Event, looked up once: the pool
    # is made on the loop it runs on
    _now: Callable[[], float] = attrs.field(init=False, factory=loop_clock, repr=False)
    _new_scope: Callable[[], anyio.CancelScope] = attrs.field(
        init=False, factory=cancel_scope_class, repr=False
    )
    _new_event: Callable[[], anyio.Event] = attrs.field(init=False, factory=event_class, repr=False)
    # the queue waits and run times of the most recent jobs that ran (PoolStatistics)
    _waits: collections.deque[float] = attrs.field(
        init=False, factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES), repr=False
    )
    _runs: collections.deque[float] = attrs.field(
        init=False, factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES), repr=False
    )
    _job_serial: itertools.count[int] = attrs.field(
        init=False, factory=lambda: itertools.count(1), repr=False
    )

    def __attrs_post_init__(self) -> None:
        # Limits are named after the config fields they take.
        limits = Limits(**{f.name: getattr(self.config, f.name) for f in attrs.fields(Limits)})
        self._state = PoolState(limits, random.Random(), id_prefix=self.name)

    # -- public API ----------------------------------------------------------------------

    def run(
        self,
        payload: object,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        memory_limit_mb: float | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Run one job and return its value (``await pool.run(payload)``). Raises
        :class:`JobFailed` (carrying the outcome) when it did not succeed,
        :class:`AcquireError` when no executor could be started. Cancelling the caller
        cancels the job. ``memory_limit_mb``: this job's own limit, applied with the
        pool's (its executor is killed above the lower one; the job ends MEMORY_LIMIT).

        The job runs in the caller's task: the pool starts no task for it. Nothing
        happens until the coroutine returned is awaited.
        """
        job = self._new_job(payload, timeout, metadata, None)
        if memory_limit_mb is not None:
            return self._run_limited(job, self._checked_limit(memory_limit_mb))
        return self._serve(None, job)

    async def call(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` on one of the pool's executors and return
        its value (``await pool.call(f, x)``). What ``function`` raises is raised here,
        as the standard executors raise it (from another process, with the traceback it
        had there as its ``__cause__``); any other failure (a crash, a timeout, a memory
        limit) raises :class:`JobFailed`.

        The pool must run calls: one opened without an ``entrypoint``. On a backend that
        runs jobs in another process, ``function`` travels by reference (define it at the
        top level of a module) and its arguments by pickle. Inside,
        :func:`executors.calls.current_job` gives the job's context (the setup's state).
        For a timeout of its own, ``await pool.run(Call(f, args, kwargs), timeout=...)``.
        """
        job = self._new_job(self.call_payload(function, args, kwargs), None, None, None)
        try:
            return await self._serve(None, job)
        except JobFailed as failed:
            own = own_exception(failed.outcome)
            if own is None:
                raise
            raise own from own.__cause__

    def map(
        self,
        function: Callable[..., Any],
        /,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
    ) -> MapResults:
        """``function(*items)`` for the items of ``iterables`` taken together (as
        :func:`map` does), run on the pool: an async iterator of the values, in the
        order of the items (``ordered``) or as they come.

        ``iterables`` are read as jobs are sent, never all at once: at most
        ``max_in_flight`` jobs (default: twice ``max_executors``) of ``chunksize`` items
        each are unfinished at any time. The first failure raises (``JobFailed``) and
        cancels the jobs left. Use it as ``async with pool.map(f, items) as values:``
        so that leaving the block early (``break``, an exception, cancellation) cancels
        what is left; without the block, leave only by exhausting it or by ``aclose()``.
        """
        return MapResults(
            self,
            function,
            iterables,
            ordered=ordered,
            chunksize=chunksize,
            max_in_flight=max_in_flight,
        )

    @property
    def runs_calls(self) -> bool:
        """Whether this pool runs plain calls (it was opened without an entrypoint)."""
        return self.config.entrypoint in (calls.SYNC_ENTRYPOINT, calls.ASYNC_ENTRYPOINT)

    def call_payload(
        self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> calls.Call:
        """The payload of a call of ``function``; a clear error where this pool cannot
        run it."""
        if not self.runs_calls:
            msg = (
                f"pool {self.name} runs the entrypoint {self.config.entrypoint!r}, not plain "
                "calls: open a pool without an entrypoint to call functions, or run "
                "payloads with pool.run()"
            )
            raise TypeError(msg)
        if not is_callable(function):
            msg = f"pool.call() needs a callable, not {type(function).__name__}: {function!r}"
            raise TypeError(msg)
        return calls.Call(function, args, kwargs)

    def _accept_served(
        self, payload: object, timeout: float | None, memory_limit_mb: float | None = None
    ) -> JobHandle:
        """Accept a job at once (no wait for room: ``max_pending`` is not applied) whose
        launches its caller performs, as run()'s are, by awaiting ``_serve(handle)`` in
        a task of its own: cancelling that task cancels the job. For callers that come
        from another thread (the PoolExecutor)."""
        if self._state.admission() is Admission.CLOSED:
            raise self._closed()
        job = self._new_job(payload, timeout, None, None)
        return self._accept(job, caller=True, memory_limit_mb=memory_limit_mb)

    async def submit(
        self,
        payload: object,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        job_id: str | None = None,
        memory_limit_mb: float | None = None,
    ) -> JobHandle:
        """Accept a job and return its handle at once (the job runs in the pool).

        Raises :class:`PoolClosed` once the pool drains. When ``max_pending`` jobs already
        wait, waits for room (``when_full = "wait"``) or raises :class:`PoolFull`.
        ``memory_limit_mb`` is the job's own limit, as for :meth:`run`.
        """
        job = self._new_job(payload, timeout, metadata, job_id)
        limit = None if memory_limit_mb is None else self._checked_limit(memory_limit_mb)
        if self._state.admission() is not _ACCEPT:
            await self._wait_for_room()
        return self._accept(job, caller=False, memory_limit_mb=limit)

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of the pool's state and counters."""
        state, counts = self._state, self._state.counts
        busy = state.count(Slot.BUSY)
        return PoolStatistics(
            idle=len(state.idle),
            busy=busy,
            starting=state.count(Slot.STARTING),
            closing=state.count(Slot.CLOSING),
            waiting=len(state.waiting),
            load=busy / self.config.max_executors,
            jobs_succeeded=counts.succeeded,
            jobs_failed=counts.failed,
            jobs_cancelled=counts.cancelled,
            jobs_timed_out=counts.timed_out,
            spawn_failures=counts.spawn_failures,
            executors_started=counts.executors_started,
            consecutive_spawn_failures=state.consecutive_failures,
            healthy=state.healthy,
            draining=state.draining,
            queue_wait=Percentiles(tuple(self._waits)),
            run_time=Percentiles(tuple(self._runs)),
        )

    def set_idle_executors(self, idle_executors: int) -> None:
        """Change how many ready executors the pool keeps (0 to ``max_executors``)."""
        self._perform(self._state.set_idle_target(idle_executors))

    async def wait_until(self, predicate: Callable[[PoolStatistics], bool]) -> PoolStatistics:
        """Wait until ``predicate(statistics)`` holds; return that snapshot.

        For example ``await pool.wait_until(lambda s: s.idle >= 4)`` waits for four warm
        executors. Wrap it in ``anyio.fail_after`` to bound the wait.
        """
        while not predicate(stats := self.statistics()):
            await self._next_change()
        return stats

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new jobs (:class:`PoolClosed`), let accepted jobs finish for up to
        ``timeout`` seconds (default ``drain_timeout``), then cancel what is left and close
        every executor. Returns when no executor is alive and every outcome is reported."""
        timeout = self.config.drain_timeout if timeout is None else timeout
        self._perform(self._state.drain())
        with anyio.move_on_after(timeout):
            await self._settled.wait()
        if not self._settled.is_set():
            logger.warning(
                "pool %s: drain timed out after %ss; cancelling",
                self.name,
                timeout,
                extra=self._fields(reason="drain_timeout"),
            )
            self._perform(self._state.abort())
        await self._closed_within_close_timeout()

    async def _abort(self, error: BaseException) -> None:
        """Close at once because the pool's block was left by ``error``: what is left is
        cancelled (``POOL_CLOSED``), as a drain that timed out at once would, but this
        is not a drain that ran out of time, and is not logged as one."""
        self._perform(self._state.drain())
        if not self._settled.is_set():
            logger.debug(
                "pool %s: its block raised %s; cancelling what is left",
                self.name,
                type(error).__name__,
                extra=self._fields(reason="pool_closed"),
            )
            self._perform(self._state.abort())
        await self._closed_within_close_timeout()

    async def _closed_within_close_timeout(self) -> None:
        # Cancelled runs end promptly and closes kill after close_timeout: bounded.
        with anyio.move_on_after(self.config.close_timeout + 5.0):
            await self._settled.wait()
        if not self._settled.is_set():
            left = sorted(self._executors)
            logger.error(
                "pool %s: executors %s did not close in time", self.name, left, extra=self._fields()
            )

    # -- accepting jobs ----------------------------------------------------------------------

    def _new_job(
        self,
        payload: object,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        job_id: str | None,
    ) -> Job:
        job_id = job_id or f"{self.name}-job-{next(self._job_serial)}"
        if job_id in self._handles:
            msg = f"job id {job_id!r} is already in use by an unfinished job"
            raise ValueError(msg)
        return Job(job_id, payload, timeout, dict(metadata or {}))

    def _accept(self, job: Job, *, caller: bool, memory_limit_mb: float | None = None) -> JobHandle:
        """Accept a job (``admission()`` said so). With ``caller`` (a job of run(), or the
        PoolExecutor's), the caller's task performs its launches, and a run without a
        timeout holds no cancel
        scope: its caller's cancellation reaches it directly, and the pool stops it (at
        the end of a drain) by killing its executor, which every backend promises ends
        the run promptly. Synchronous, like the admission before it: nothing can change
        between the two."""
        handle = JobHandle(job, self, self._now())
        self._handles[job.id] = handle
        handle._served = caller
        scoped = self._holds_scope(job, caller=caller)
        self._perform(self._state.submit(job.id, scoped, memory_limit_mb))
        return handle

    def _checked_limit(self, memory_limit_mb: object) -> float:
        """A job's own memory limit, or a clear error: a positive number, on a backend
        that measures memory (else nothing would apply it)."""
        if (
            isinstance(memory_limit_mb, bool)
            or not isinstance(memory_limit_mb, int | float)
            or not memory_limit_mb > 0
        ):
            msg = f"memory_limit_mb must be a positive number of MiB, not {memory_limit_mb!r}"
            raise ValueError(msg)
        if not self.backend.capabilities.measures_memory:
            msg = (
                f"backend {self.backend.name!r} does not measure its executors' memory: a "
                "job's memory_limit_mb would never apply (use the process backend)"
            )
            raise ValueError(msg)
        return float(memory_limit_mb)

    async def _run_limited(self, job: Job, memory_limit_mb: float) -> Any:
        """run() of a job with its own memory limit: accepted here, then served in this
        frame as run()'s jobs are."""
        if self._state.admission() is not _ACCEPT:
            await self._wait_for_room()
        handle = self._accept(job, caller=True, memory_limit_mb=memory_limit_mb)
        await self._serve(handle)
        assert handle._outcome is not None
        return result_of(handle._outcome)

    def _closed(self) -> PoolClosed:
        return PoolClosed(f"pool {self.name} is draining or closed: it accepts no new jobs")

    def _holds_scope(self, job: Job, *, caller: bool) -> bool:
        """Whether the runs of ``job`` hold a cancel scope: all but those of a run() job
        without a timeout (its own or ``job_timeout``)."""
        return not caller or self._timeout_of(job) is not None

    def _timeout_of(self, job: Job) -> float | None:
        """The job's own timeout, else ``job_timeout`` (a timeout of 0 is one)."""
        return job.timeout if job.timeout is not None else self.config.job_timeout

    async def _wait_for_room(self) -> None:
        while True:
            match self._state.admission():
                case Admission.ACCEPT:
                    return
                case Admission.CLOSED:
                    raise self._closed()
                case Admission.FULL:
                    limit = self.config.max_pending
                    msg = f"pool {self.name} is full: {limit} jobs already wait (max_pending)"
                    raise PoolFull(msg)
                case Admission.WAIT:
                    await self._next_change()

    # -- the one launch path -------------------------------------------------------------------

    async def _serve(self, handle: JobHandle | None, job: Job | None = None) -> Any:
        """Performs every launch handed over to a job, in this frame, until the job has
        its outcome; the job's value (or the exception its outcome stands for).

        For run() (``handle`` None) ``job`` is accepted here and this frame is its
        caller's: no task is started, and a running job holds no other frame of the
        pool's. For a submitted job this runs in a task the pool starts at its first
        launch (a PoolExecutor's job: in the task the executor starts as it accepts
        it), and returns None.
        """
        # Every local here is held by each running job: they are kept few.
        caller = handle is None
        if handle is None:
            assert job is not None, "run() gives its job"
            if self._state.admission() is not _ACCEPT:
                await self._wait_for_room()
            handle = self._accept(job, caller=True)
        job = handle.job
        try:
            while handle._outcome is None:
                if handle._handover is None:
                    if handle._done is None:
                        handle._done = self._new_event()
                    await handle._done.wait()
                    continue
                executor, scope = self._begin(handle)
                if executor is None:
                    continue  # cancelled before it could begin
                outcome: JobOutcome | None = None
                try:
                    with _NO_SCOPE if scope is None else scope:
                        try:
                            outcome = await executor.run_job(job)
                        except Exception as exc:
                            self._run_scopes.pop(job.id, None)
                            self._report_raised(job.id, executor, exc)
                            continue
                except BaseException:
                    # Cancelled from outside the run's scope: its caller was.
                    self._run_scopes.pop(job.id, None)
                    reusable, abandoned = self._fitness(executor)
                    self._perform(
                        self._state.run_interrupted(
                            job.id, executor.id, reusable=reusable, abandoned=abandoned
                        )
                    )
                    raise
                if scope is not None:
                    del self._run_scopes[job.id]
                self._perform(
                    self._state.run_ended(job.id, executor.id, outcome, *self._fitness(executor))
                )
        finally:
            handle._served = False
            if handle._outcome is None:
                launch, handle._handover = handle._handover, None
                if launch is not None:
                    # Handed over as its caller was cancelled: never begun.
                    self._perform(self._state.run_not_started(job.id, launch.executor_id))
                else:
                    self._cancel(job.id, FailureReason.CANCELLED)
        return result_of(handle._outcome) if caller else None

    def _begin(
        self, handle: JobHandle
    ) -> tuple[JobExecutor, anyio.CancelScope | None] | tuple[None, None]:
        """Takes the launch handed over to ``handle``: its run begins now (its start time,
        its scope's deadline, the ``executors_job_started`` hook). Returns its executor
        and scope; no executor if the job was cancelled before its run could begin (it
        then has its outcome, or waits for its next launch). The launch action is
        dropped: a running job holds none."""
        launch, handle._handover = handle._handover, None
        assert launch is not None, f"no launch handed over to {handle.job.id}"
        job = handle.job
        if not self._state.may_start(job.id):
            self._perform(self._state.run_not_started(job.id, launch.executor_id))
            return None, None
        executor = self._executors[launch.executor_id]
        attempt = launch.attempt
        started = handle._started = self._now()
        # Made only now that the run begins: a job cancelled before (may_start) needs
        # none, and state.cancel() reaches a run that holds one through it.
        scope = None
        if launch.scoped:
            scope = self._run_scopes[job.id] = self._new_scope()
            if (timeout := self._timeout_of(job)) is not None:
                scope.deadline = started + timeout
        if self._observers.wants("executors_job_started"):
            self._observers.call(
                "executors_job_started",
                pool_name=self.name,
                job=job,
                executor_id=executor.id,
                attempt=attempt,
            )
        return executor, scope

    def _fields(
        self, job_id: str | None = None, executor_id: str | None = None, reason: str | None = None
    ) -> dict[str, str | None]:
        """The structured fields of the pool's log records (``extra``): every record has
        all four, None where one does not apply."""
        return {"pool": self.name, "job_id": job_id, "executor_id": executor_id, "reason": reason}

    @staticmethod
    def _fitness(executor: JobExecutor) -> tuple[bool, bool]:
        """``(reusable, abandoned)``: whether ``executor`` can take another job; if not,
        whether it gave its job up (see ``Health.abandoned``)."""
        if executor.state is _READY:
            return True, False
        return False, executor.health().abandoned

    def _report_raised(self, job_id: str, executor: JobExecutor, error: Exception) -> None:
        if isinstance(error, LaunchError):
            logger.warning(
                "pool %s: %s refused %s: %s",
                self.name,
                executor.id,
                job_id,
                error,
                extra=self._fields(job_id, executor.id, "launch_refused"),
            )
        else:
            logger.error(
                "pool %s: %s.run_job raised (for %s)",
                self.name,
                executor.id,
                job_id,
                exc_info=error,
                extra=self._fields(job_id, executor.id, "run_job_raised"),
            )
        self._perform(self._state.run_raised(job_id, executor.id, error))

    # -- performing --------------------------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        """Perform ``actions``, in order."""
        for action in actions:
            match action:
                case LaunchJob():
                    self._hand_over(action)
                case EndJob():
                    self._end(action)
                case SpawnExecutor():
                    scope = self._spawn_scopes[action.executor_id] = self._new_scope()
                    self._tg.start_soon(self._spawn, action, scope)
                case CloseExecutor():
                    self._tg.start_soon(self._close, action)
                case CancelJob():
                    if (run_scope := self._run_scopes.get(action.job_id)) is not None:
                        run_scope.cancel()
                case KillExecutor():
                    self._tg.start_soon(self._kill, action)
                case CancelSpawn():
                    self._spawn_scopes[action.executor_id].cancel()
                case FinishJob():
                    self._finish_unrun(action)
                case ReportUnhealthy():
                    self._report_unhealthy(action)
                case WarnMemory():
                    logger.warning(
                        "pool %s: %s uses %.0f MiB (memory_warn_mb = %s)",
                        self.name,
                        action.executor_id,
                        action.memory_mb,
                        self.config.memory_warn_mb,
                        extra=self._fields(executor_id=action.executor_id, reason="memory_warn"),
                    )
        self._notify()

    def _hand_over(self, action: LaunchJob) -> None:
        handle = self._handles[action.job_id]
        handle._handover = action
        if not handle._served:
            handle._served = True
            self._tg.start_soon(self._serve, handle)
        else:
            handle._changed()

    def _end(self, action: EndJob) -> None:
        handle = self._handles.pop(action.job_id)
        outcome = action.outcome
        value: object = None
        error: RemoteError | None = None
        if action.error is not None:
            error = RemoteError.from_exception(action.error)
        elif outcome is not None:
            value, error = outcome.value, outcome.error
        now, started = self._now(), handle._started
        if started is not None:
            self._waits.append(started - handle.submitted_at)
            self._runs.append(now - started)
        # positional, in the order of JobOutcome's fields: quicker, and this runs once a job
        self._deliver(
            handle,
            JobOutcome(
                action.job_id,
                action.status,
                value,
                action.reason,
                error,
                action.executor_id,
                action.attempt,
                handle.submitted_at,
                started,
                now,
            ),
        )

    def _finish_unrun(self, action: FinishJob) -> None:
        handle = self._handles.pop(action.job_id)
        error = RemoteError.from_exception(action.error) if action.error else None
        outcome = attrs.evolve(
            JobOutcome.failure(action.job_id, action.reason, error),
            attempts=action.attempts,
            submitted_at=handle.submitted_at,
            finished_at=self._now(),
        )
        self._deliver(handle, outcome)

    def _deliver(self, handle: JobHandle, outcome: JobOutcome) -> None:
        """``handle`` (no longer among the unfinished) has its outcome."""
        handle._set(outcome)
        if self._observers.wants("executors_job_finished"):
            self._observers.call(
                "executors_job_finished", pool_name=self.name, job=handle.job, outcome=outcome
            )

    def _cancel(self, job_id: str, reason: FailureReason) -> None:
        if job_id in self._handles:
            self._perform(self._state.cancel(job_id, reason))

    async def _spawn(self, action: SpawnExecutor, scope: anyio.CancelScope) -> None:
        executor_id = action.executor_id
        error: BaseException | None = None
        with scope:
            if action.delay:
                await anyio.sleep(action.delay)
            else:
                # A spawn cancelled before its task ran ends here, with no executor
                # made; one that is not goes on at once (no pass of the event loop).
                await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                executor = self._factory.create_executor(executor_id)
                self._executors[executor_id] = executor
                with anyio.move_on_after(self.config.initialize_timeout) as deadline:
                    await executor.start()
            except Exception as exc:
                error = exc
            else:
                if deadline.cancelled_caught:
                    msg = (
                        f"executor {executor_id} did not start within initialize_timeout "
                        f"({self.config.initialize_timeout}s)"
                    )
                    error = TimeoutError(msg)
        del self._spawn_scopes[executor_id]
        if scope.cancelled_caught:
            error = PoolClosed(f"spawn of executor {executor_id} abandoned: the pool is closing")
        if error is None:
            self._observers.call(
                "executors_executor_ready", pool_name=self.name, executor_id=executor_id
            )
            wait_exited = getattr(self._executors[executor_id], "wait_exited", None)
            if wait_exited is not None:
                self._tg.start_soon(watch_exit, self, executor_id, wait_exited)
            self._perform(self._state.spawn_succeeded(executor_id))
            return
        logger.warning(
            "pool %s: executor %s failed to start: %s",
            self.name,
            executor_id,
            error,
            extra=self._fields(executor_id=executor_id, reason="spawn_failed"),
        )
        self._perform(self._state.spawn_failed(executor_id, error))

    async def _kill(self, action: KillExecutor) -> None:
        executor = self._executors.get(action.executor_id)
        if executor is not None:
            # A kill for a limit is logged once, as the executor is closed for it.
            if action.detail:
                logger.error(
                    "pool %s: %s broke the contract (%s); killing it",
                    self.name,
                    executor.id,
                    action.detail,
                    extra=self._fields(executor_id=executor.id, reason=action.reason.value),
                )
            # A kill must finish even while the pool is being cancelled: nothing leaks.
            with anyio.CancelScope(shield=True):
                await executor.kill()
        self._perform(self._state.kill_done(action.executor_id))

    async def _close(self, action: CloseExecutor) -> None:
        executor = self._executors.get(action.executor_id)
        if executor is not None:
            if action.reason in _TROUBLE:
                logger.warning(
                    "pool %s: %s is %s; closing it",
                    self.name,
                    executor.id,
                    action.reason.value,
                    extra=self._fields(executor_id=executor.id, reason=action.reason.value),
                )
            # Closing must finish even while the pool is being cancelled: nothing leaks.
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.config.close_timeout) as graceful:
                    await executor.aclose()
                if graceful.cancelled_caught:
                    logger.warning(
                        "pool %s: %s did not close within close_timeout; killing",
                        self.name,
                        executor.id,
                        extra=self._fields(executor_id=executor.id, reason="close_timeout"),
                    )
                    await executor.kill()
            del self._executors[action.executor_id]
            self._observers.call(
                "executors_executor_closed",
                pool_name=self.name,
                executor_id=action.executor_id,
                reason=action.reason.value,
            )
        self._perform(self._state.executor_closed(action.executor_id))

    def _report_unhealthy(self, action: ReportUnhealthy) -> None:
        logger.error(
            "pool %s is unhealthy: %d spawns failed in a row; last error: %s",
            self.name,
            action.consecutive_failures,
            action.error,
            extra=self._fields(reason="unhealthy"),
        )
        self._observers.call(
            "executors_pool_unhealthy",
            pool_name=self.name,
            consecutive_failures=action.consecutive_failures,
            error=action.error,
        )

    # -- changes of state ----------------------------------------------------------------------

    async def _next_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        # Events are made only for waiters: most changes have nobody waiting on them.
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        if self._state.draining and self._state.settled:
            self._settled.set()


_pool_serial = itertools.count(1)


def _resolve_config(
    config: PoolConfig | LoadedConfig | None, overrides: Mapping[str, object]
) -> LoadedConfig:
    if config is None:
        return load_config(overrides)
    if isinstance(config, LoadedConfig):
        if overrides:
            msg = "open_pool() takes overrides or a LoadedConfig, not both"
            raise TypeError(msg)
        return config
    return LoadedConfig.of(config.evolve(**overrides) if overrides else config)


class _Opening:
    """What :func:`open_pool` returns: an async context manager (the pool), and a clear
    error for ``with``, which cannot open it."""

    __slots__ = ("_opening",)

    def __init__(self, opening: AbstractAsyncContextManager[Pool]) -> None:
        self._opening = opening

    async def __aenter__(self) -> Pool:
        return await self._opening.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._opening.__aexit__(exc_type, exc, traceback)

    def __enter__(self) -> NoReturn:
        msg = (
            "open_pool() opens a pool for async code: use 'async with open_pool(...) as "
            "pool:' in a coroutine; from synchronous code, use executors.PoolExecutor (a "
            "concurrent.futures executor over the same pool)"
        )
        raise TypeError(msg)

    def __exit__(self, *exc_info: object) -> None:
        return None


def open_pool(
    config: PoolConfig | LoadedConfig | None = None,
    /,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    observers: Sequence[object] = (),
    **overrides: object,
) -> _Opening:
    """Open a pool, warm it, and drain and close it on exit.

    Without ``config`` the configuration is loaded from ``pyproject.toml``,
    ``executors.toml`` and ``EXECUTORS_*`` variables, with ``overrides`` on top; with a
    :class:`PoolConfig`, ``overrides`` are applied to it and no file is read; a
    :class:`LoadedConfig` (from :func:`load_config`) is used as it is, and errors in
    backend options then name the file or variable they came from.
    ``observers`` are plugin objects whose lifecycle hooks this pool calls, besides the
    installed plugins'. Leaving the block drains the pool (``drain_timeout``); leaving
    it with an exception (or cancellation) cancels what is running at once.
    """
    return _Opening(
        _opened_pool(config, name=name, registry=registry, observers=observers, **overrides)
    )


#: settings that only a backend which measures its executors' memory can apply
_MEMORY_LIMITS = ("memory_warn_mb", "memory_limit_mb")


def _check_enforceable(loaded: LoadedConfig, backend: str, capabilities: Capabilities) -> None:
    """A limit the backend cannot apply is an error, never silently ignored."""
    if capabilities.measures_memory:
        return
    for key in _MEMORY_LIMITS:
        value = getattr(loaded.config, key)
        if value is not None:
            msg = (
                f"{loaded.source(key)}: {key} = {value!r} is invalid: backend {backend!r} "
                "does not measure its executors' memory (its capability measures_memory "
                f"is false), so the limit would never apply; unset {key}, or use a "
                "backend that measures memory (process)"
            )
            raise ConfigError(msg)


@asynccontextmanager
async def _opened_pool(
    config: PoolConfig | LoadedConfig | None,
    *,
    name: str | None,
    registry: Registry | None,
    observers: Sequence[object],
    **overrides: object,
) -> AsyncIterator[Pool]:
    loaded = _resolve_config(config, overrides)
    cfg = loaded.config
    registry = registry if registry is not None else default_registry()
    backend = registry.backend(cfg.backend, source=loaded.source("backend"))
    _check_enforceable(loaded, backend.name, backend.capabilities)
    if cfg.entrypoint is None:
        # A pool of plain calls (pool.call, pool.map, PoolExecutor): its jobs are Call
        # payloads, which one entrypoint of executors.calls runs.
        sync = backend.capabilities.sync_entrypoints
        cfg = cfg.evolve(entrypoint=calls.SYNC_ENTRYPOINT if sync else calls.ASYNC_ENTRYPOINT)
    assert cfg.entrypoint is not None
    check_runnable(cfg.entrypoint, backend.name, backend.capabilities, what="entrypoint")
    if cfg.setup is not None:
        resolve_callable(cfg.setup, what="setup")
    options: object = build_backend_options(backend.options, loaded)
    hooks = Observers(registry.hooks_for(observers))
    # The block's own exception is re-raised after the task group has exited, so callers
    # see their exception, not an ExceptionGroup wrapping it.
    error: BaseException | None = None
    async with backend.open(cfg, options) as factory, anyio.create_task_group() as tg:
        pool = Pool(name or f"pool{next(_pool_serial)}", cfg, backend, factory, tg, hooks)
        pool._perform(pool._state.start())
        tg.start_soon(supervise, pool)
        try:
            yield pool
        except BaseException as exc:
            error = exc
        with anyio.CancelScope(shield=True):
            await (pool.drain() if error is None else pool._abort(error))
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
