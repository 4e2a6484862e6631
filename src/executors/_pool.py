"""The async driver of the pool: performs what ``_pool_state`` decides.

Every change of state happens in one synchronous call (``PoolState.<event>()``) that
returns actions; :meth:`Pool._perform` starts a task per action that needs awaiting
and feeds its result back as the next event. Timeouts are cancel scopes around backend
calls; nothing here sleeps to wait for a condition.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs
import pluggy

from . import _hookspecs
from ._clock import cancel_scope_class, event_class, loop_clock, on_asyncio
from ._config import LoadedConfig, PoolConfig, build_backend_options, load_config
from ._entrypoints import check_runnable, resolve_callable
from ._exceptions import AcquireError, ConfigError, JobFailed, LaunchError, PoolClosed, PoolFull
from ._executor import ExecutorState
from ._handover import begin
from ._job import FailureReason, Job, JobOutcome, RemoteError, status_of
from ._plugins import Registry, default_registry
from ._pool_state import (
    Action,
    CancelJob,
    CancelSpawn,
    CloseExecutor,
    CloseReason,
    FinishJob,
    LaunchJob,
    Limits,
    PoolState,
    ReportUnhealthy,
    Slot,
    SpawnExecutor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

    from anyio.abc import TaskGroup

    from ._executor import Backend, ExecutorFactory, JobExecutor

logger = logging.getLogger("executors.pool")

# Read once a job by _complete: an Enum member read off its class runs Python code on 3.11.
_READY, _POOL_CLOSED, _BROKEN = ExecutorState.READY, FailureReason.POOL_CLOSED, CloseReason.BROKEN


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

_OBSERVER_HOOKS = (
    "executors_executor_ready",
    "executors_executor_closed",
    "executors_job_started",
    "executors_job_finished",
    "executors_pool_unhealthy",
    "executors_pool_statistics",
)


@attrs.frozen
class PoolStatistics:
    """A snapshot of a pool, from :meth:`Pool.statistics`."""

    idle: int
    busy: int
    starting: int
    closing: int
    #: accepted jobs waiting for an executor
    waiting: int
    #: busy / max_executors
    load: float
    jobs_succeeded: int
    jobs_failed: int
    jobs_cancelled: int
    jobs_timed_out: int
    spawn_failures: int
    executors_started: int
    consecutive_spawn_failures: int
    healthy: bool
    draining: bool


class _Observers:
    """Calls lifecycle hooks one implementation at a time, so an observer that raises is
    logged and ignored and can never change an outcome. Hooks nobody implements cost one
    empty-tuple check."""

    def __init__(self, plugins: Iterable[object]) -> None:
        pm = pluggy.PluginManager("executors")
        pm.add_hookspecs(_hookspecs)
        for plugin in plugins:
            if not pm.is_registered(plugin):
                pm.register(plugin)
        self._impls: dict[str, tuple[tuple[Callable[..., object], tuple[str, ...]], ...]] = {
            name: tuple(
                (impl.function, tuple(impl.argnames))
                for impl in reversed(getattr(pm.hook, name).get_hookimpls())
            )
            for name in _OBSERVER_HOOKS
        }

    @classmethod
    def of(cls, plugins: Sequence[object]) -> _Observers:
        """The observers of ``plugins``: the last pool's, when they are the same objects.
        Registering plugins with pluggy costs about 1.5 ms, paid by every pool that
        opened; the table is never changed once made, so pools can share it."""
        global _last_observers
        last = _last_observers
        if (
            last is not None
            and len(last[0]) == len(plugins)
            and all(a is b for a, b in zip(last[0], plugins, strict=True))
        ):
            return last[1]
        observers = cls(plugins)
        # Holds the plugins themselves, not their ids: an id is never reused meanwhile.
        _last_observers = (tuple(plugins), observers)
        return observers

    def wants(self, hook: str) -> bool:
        return bool(self._impls[hook])

    def call(self, hook: str, **kwargs: object) -> None:
        for function, argnames in self._impls[hook]:
            try:
                function(*[kwargs[name] for name in argnames])
            except Exception:
                logger.exception("observer %s raised in %s; ignored", function, hook)


@attrs.define(eq=False)
class JobHandle:
    """A submitted job. Await :meth:`outcome` or :meth:`result`; :meth:`cancel` stops it."""

    job: Job
    _pool: Pool = attrs.field(repr=False)
    submitted_at: float
    # Made by the first waiter: a job run by run() in its caller's task has none.
    _done: anyio.Event | None = attrs.field(init=False, default=None, repr=False)
    _outcome: JobOutcome | None = attrs.field(init=False, default=None)
    # A job of run(): its caller's task performs its launches (no task per job), and
    # the pool wakes the caller when it hands one over.
    _runner: bool = attrs.field(init=False, default=False, repr=False)
    # The launch handed over and not yet begun (by run()'s caller, or by the task the
    # pool starts for a submitted job's launch). Invariant: None while the job runs.
    _handover: LaunchJob | None = attrs.field(init=False, default=None, repr=False)

    @property
    def id(self) -> str:
        return self.job.id

    def done(self) -> bool:
        """True once the job has its outcome."""
        return self._outcome is not None

    async def outcome(self) -> JobOutcome:
        """Wait for the job's one outcome. Cancelling this wait does not cancel the job."""
        if self._outcome is None:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        assert self._outcome is not None
        return self._outcome

    async def result(self) -> Any:
        """The job's return value; raises :class:`JobFailed` (or :class:`AcquireError`)
        carrying the outcome when it did not succeed."""
        return _result_of(await self.outcome())

    def cancel(self) -> None:
        """Ask the pool to stop this job: a waiting job ends at once, a running one is
        cancelled on its executor. Its outcome is then CANCELLED (unless it already ended)."""
        self._pool._cancel(self.job.id, FailureReason.CANCELLED)

    def _set(self, outcome: JobOutcome) -> None:
        assert self._outcome is None, f"second outcome for {self.job.id}: {outcome}"
        self._outcome = outcome
        if self._done is not None:
            self._done.set()


def _result_of(outcome: JobOutcome) -> Any:
    if outcome.ok:
        return outcome.value
    cause = outcome.error.exception if outcome.error else None
    if outcome.reason is FailureReason.ACQUIRE_FAILED:
        msg = f"no executor could be started for job {outcome.job_id}"
        if outcome.error:
            msg += f"; last spawn error: {outcome.error}"
        raise AcquireError(msg, outcome) from cause
    raise JobFailed(outcome.describe(), outcome) from cause


@attrs.define(eq=False)
class Pool:
    """A pool of executors from one backend. Create it with :func:`open_pool`."""

    name: str
    config: PoolConfig
    backend: Backend
    _factory: ExecutorFactory = attrs.field(repr=False)
    _tg: TaskGroup = attrs.field(repr=False)
    _observers: _Observers = attrs.field(repr=False)
    _state: PoolState = attrs.field(init=False, repr=False)
    # Live executor objects. Invariant: a subset of _state.executors' ids (an id is in the
    # state from the spawn decision, here from create_executor() until its close ends).
    _executors: dict[str, JobExecutor] = attrs.field(init=False, factory=dict, repr=False)
    # Unfinished jobs. Invariant: same ids as _state.jobs.
    _handles: dict[str, JobHandle] = attrs.field(init=False, factory=dict, repr=False)
    # Cancel scopes of runs and spawns, created before their task so a cancel that comes
    # before the task starts still applies. A run of Pool.run() without a timeout has none
    # on a backend with cheap_kill or an asyncio host (see _scopeless_runs).
    _run_scopes: dict[str, anyio.CancelScope] = attrs.field(init=False, factory=dict, repr=False)
    _spawn_scopes: dict[str, anyio.CancelScope] = attrs.field(init=False, factory=dict, repr=False)
    _cancel_reasons: dict[str, FailureReason] = attrs.field(init=False, factory=dict, repr=False)
    # Why the supervisor killed a busy executor; overrides the KILLED/CRASHED it reports.
    _kill_reasons: dict[str, FailureReason] = attrs.field(init=False, factory=dict, repr=False)
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
    _job_serial: itertools.count[int] = attrs.field(
        init=False, factory=lambda: itertools.count(1), repr=False
    )
    _memory_warned_at: dict[str, float] = attrs.field(init=False, factory=dict, repr=False)
    # A run that only a drain's end can cancel (a run() job without a timeout: its
    # caller's own cancellation reaches it directly) holds no cancel scope when that end
    # can stop it another way: by killing its executor, if the backend kills cheaply
    # (Capabilities.cheap_kill); else, on asyncio and if the backend allows it
    # (Capabilities.cancel_by_task), by cancelling its caller's task as asyncio does
    # (Task.cancel(), taken back by run() with Task.uncancel()). Other runs keep their
    # scope.
    _kill_ends_runs: bool = attrs.field(init=False, repr=False)
    _cancel_tasks: bool = attrs.field(init=False, repr=False)
    _scopeless_runs: bool = attrs.field(init=False, repr=False)
    # A run() job without a timeout (its own or the pool's job_timeout) that finds an idle
    # executor (and no job waiting for one) is handed to it before the pool's bookkeeping
    # for the launch, which is done while the executor picks it up
    # (Capabilities.hands_over_at_once, see _handover).
    _hand_over_first: bool = attrs.field(init=False, repr=False)
    # With _cancel_tasks: job id -> the task of its run() caller, and that task's
    # cancellation requests when the job came (one left once the pool's is taken back is
    # someone else's, never swallowed); jobs whose caller the pool cancelled and run() has
    # yet to take that back. Kept here, not in the handles: a coroutine job's handle
    # (cheap kills, no such runs) stays as small as it can.
    _runner_tasks: dict[str, tuple[asyncio.Task[Any], int]] = attrs.field(
        init=False, factory=dict, repr=False
    )
    _tasks_cancelled: set[str] = attrs.field(init=False, factory=set, repr=False)

    def __attrs_post_init__(self) -> None:
        caps = self.backend.capabilities
        self._kill_ends_runs = caps.cheap_kill and caps.can_kill_running_job
        self._cancel_tasks = not self._kill_ends_runs and caps.cancel_by_task and on_asyncio()
        self._scopeless_runs = self._kill_ends_runs or self._cancel_tasks
        self._hand_over_first = (
            caps.hands_over_at_once and self._scopeless_runs and self.config.job_timeout is None
        )
        # Limits are named after the config fields they take.
        limits = Limits(**{f.name: getattr(self.config, f.name) for f in attrs.fields(Limits)})
        self._state = PoolState(limits, random.Random(), id_prefix=self.name)

    # -- public API ----------------------------------------------------------------------

    async def run(
        self,
        payload: object,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Any:
        """Run one job and return its value. Raises :class:`JobFailed` (carrying the
        outcome) when it did not succeed, :class:`AcquireError` when no executor could be
        started. Cancelling the caller cancels the job."""
        if self._must_wait_for_room():
            await self._wait_for_room()
        handle, begun = self._accept_run(payload, timeout, metadata)
        job = handle.job
        if self._cancel_tasks:
            task = asyncio.current_task()
            assert task is not None, "run() runs in a task"
            self._runner_tasks[job.id] = (task, task.cancelling())
        try:
            # Launches are handed to this task (at once when an executor is free, later
            # when one frees up, again after a refused launch): it runs the job itself,
            # with no task to start and no hand-off back, and the caller's cancellation
            # reaches the job directly. Each launch is performed in this frame, with the
            # steps of _launch: a running job holds no other frame of the pool's.
            while handle._outcome is None:
                if handle._handover is None:
                    handle._done = self._new_event()
                    await handle._done.wait()
                    continue
                executor, started, scope, attempt = self._begin_launch(handle)
                outcome: JobOutcome | None = None
                try:
                    with _NO_SCOPE if scope is None else scope:
                        if job.id not in self._cancel_reasons:
                            try:
                                if begun is None:
                                    outcome = await executor.run_job(job)
                                else:
                                    outcome = await begun
                            except Exception as exc:
                                outcome = await self._raised(job, executor, exc)
                                if outcome is None:
                                    begun = None
                                    continue  # refused: the next launch is handed over
                            if outcome.job_id != job.id:
                                outcome = await self._stale(job, executor, outcome)
                except BaseException as exc:
                    if self._took_back(job.id) and isinstance(exc, asyncio.CancelledError):
                        # The pool's cancellation alone (the end of a drain): the job ends
                        # with its reason, and the caller is not cancelled. An anyio scope
                        # of the caller's cancelled in the same step waits for the pool's
                        # to land, then cancels at the next checkpoint: this one.
                        self._complete(attempt, handle, executor, None, started)
                        await anyio.lowlevel.checkpoint()
                        continue
                    self._interrupted(attempt, handle, executor, started)
                    raise
                if self._tasks_cancelled:
                    # A backend that swallowed the pool's cancellation still had it sent.
                    self._took_back(job.id)
                self._complete(attempt, handle, executor, outcome, started)
        finally:
            handle._runner = False
            if self._cancel_tasks:
                del self._runner_tasks[job.id]
            if not handle.done():
                handle.cancel()
            if handle._handover is not None:
                # Handed over as this caller was cancelled: launched in a task, its run
                # (cancelled above) ends at once, and the executor is kept.
                self._tg.start_soon(self._launch, handle)
        return _result_of(handle._outcome)

    async def submit(
        self,
        payload: object,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        job_id: str | None = None,
    ) -> JobHandle:
        """Accept a job and return its handle at once (the job runs in the pool).

        Raises :class:`PoolClosed` once the pool drains. When ``max_pending`` jobs already
        wait, waits for room (``when_full = "wait"``) or raises :class:`PoolFull`.
        """
        if self._must_wait_for_room():
            await self._wait_for_room()
        return self._accept_job(self._new_job(payload, timeout, metadata, job_id), runner=False)

    def _accept_run(
        self, payload: object, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> tuple[JobHandle, Awaitable[JobOutcome] | None]:
        """Accept a job of run(). If it can be launched at once without a cancel scope,
        on a backend that hands jobs over at once, it is handed to its executor first,
        and the awaitable that finishes that ``run_job`` is returned with its handle."""
        state = self._state
        job = self._new_job(payload, timeout, metadata, None)
        if not (timeout is None and self._hand_over_first and state.idle and not state.waiting):
            return self._accept_job(job, runner=True), None
        # The executor the state is about to choose (the newest idle one, see _assign)
        # has the job before anything else is done for it.
        executor = self._executors[state.idle[-1]]
        begun = begin(executor.run_job(job))
        handle = self._accept_job(job, runner=True)
        launch = handle._handover
        assert launch is not None, f"{job.id} was not launched"
        assert launch.executor_id == executor.id, f"{job.id} went to {launch.executor_id}"
        return handle, begun

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
        return Job(id=job_id, payload=payload, timeout=timeout, metadata=dict(metadata or {}))

    def _accept_job(self, job: Job, *, runner: bool) -> JobHandle:
        """Accept a job (there is room: see ``_wait_for_room``); with ``runner``, its
        launches are handed to the caller's task (see :meth:`run`) instead of being
        started as tasks. Synchronous, like the room check before it: no coroutine to
        run for either in the usual case, and nothing can change between the two."""
        job_id = job.id
        handle = JobHandle(job, self, self._now())
        self._handles[job_id] = handle
        handle._runner = runner
        self._perform(self._state.submit(job_id))
        return handle

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
            logger.warning("pool %s: drain timed out after %ss; cancelling", self.name, timeout)
            self._perform(self._state.abort())
        # Cancelled runs end promptly and closes kill after close_timeout: bounded.
        with anyio.move_on_after(self.config.close_timeout + 5.0):
            await self._settled.wait()
        if not self._settled.is_set():
            left = sorted(self._executors)
            logger.error("pool %s: executors %s did not close in time", self.name, left)

    # -- driver --------------------------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        """Perform ``actions``."""
        for action in actions:
            match action:
                case SpawnExecutor():
                    scope = self._spawn_scopes[action.executor_id] = self._new_scope()
                    self._tg.start_soon(self._spawn, action, scope)
                case LaunchJob():
                    handle = self._handles[action.job_id]
                    handle._handover = action
                    if handle._runner:
                        if not self._scopeless_runs or self._timeout_of(handle.job) is not None:
                            self._run_scopes[action.job_id] = self._new_scope()
                        if handle._done is not None:
                            handle._done.set()
                    else:
                        self._run_scopes[action.job_id] = self._new_scope()
                        self._tg.start_soon(self._launch, handle)
                case CloseExecutor():
                    self._tg.start_soon(self._close, action)
                case CancelJob():
                    self._cancel_run(action)
                case CancelSpawn():
                    self._spawn_scopes[action.executor_id].cancel()
                case FinishJob():
                    self._finish_unrun(action)
                case ReportUnhealthy():
                    self._report_unhealthy(action)
        self._notify()

    def _cancel_run(self, action: CancelJob) -> None:
        if action.job_id in self._cancel_reasons:
            return  # already cancelled: the first reason stands
        self._cancel_reasons[action.job_id] = action.reason
        scope = self._run_scopes.get(action.job_id)
        if scope is not None:
            scope.cancel()
        elif self._handles[action.job_id]._handover is None:
            # A run with no scope that has begun (one handed over and not yet taken sees
            # its cancel reason and never starts): a kill ends it, or a cancellation of
            # its caller's task, which the executor meets as it would its scope's.
            if self._kill_ends_runs:
                self._kill_reasons[action.executor_id] = action.reason
                self._tg.start_soon(self._executors[action.executor_id].kill)
            elif (runner := self._runner_tasks.get(action.job_id)) is not None:
                self._tasks_cancelled.add(action.job_id)
                runner[0].cancel()

    def _took_back(self, job_id: str) -> bool:
        """Takes back the cancellation the pool sent to run()'s caller, if it sent one:
        True when it was the task's only new one (nobody else cancelled the caller)."""
        if job_id not in self._tasks_cancelled:
            return False
        self._tasks_cancelled.remove(job_id)
        task, cancelling = self._runner_tasks[job_id]
        return task.uncancel() <= cancelling

    def _timeout_of(self, job: Job) -> float | None:
        return job.timeout if job.timeout is not None else self.config.job_timeout

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

    def _must_wait_for_room(self) -> bool:
        """Whether ``_wait_for_room`` has anything to do (to refuse, or to wait)."""
        state, limit = self._state, self.config.max_pending
        return state.draining or (limit is not None and len(state.waiting) >= limit)

    async def _wait_for_room(self) -> None:
        limit = self.config.max_pending
        while True:
            if self._state.draining:
                msg = f"pool {self.name} is draining or closed: it accepts no new jobs"
                raise PoolClosed(msg)
            if limit is None or len(self._state.waiting) < limit:
                return
            if self.config.when_full == "reject":
                msg = f"pool {self.name} is full: {limit} jobs already wait (max_pending)"
                raise PoolFull(msg)
            await self._next_change()

    async def _spawn(self, action: SpawnExecutor, scope: anyio.CancelScope) -> None:
        executor_id = action.executor_id
        error: BaseException | None = None
        with scope:
            await anyio.sleep(action.delay)
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
                self._tg.start_soon(self._watch_exit, executor_id, wait_exited)
            self._perform(self._state.spawn_succeeded(executor_id))
            return
        logger.warning("pool %s: executor %s failed to start: %s", self.name, executor_id, error)
        self._perform(self._state.spawn_failed(executor_id, error))

    async def _launch(self, handle: JobHandle) -> None:
        """Performs the launch handed over to ``handle`` (of a submitted job, in a task of
        its own). ``run()`` performs its own launches with the same steps, in its frame."""
        job = handle.job
        executor, started, scope, attempt = self._begin_launch(handle)
        outcome: JobOutcome | None = None
        try:
            with _NO_SCOPE if scope is None else scope:
                # A run cancelled before it could start (its caller was cancelled while
                # the launch was handed over, or a drain came first) never reaches the
                # executor, which is kept. The run is awaited in this frame, not in a
                # helper's: every running job holds its frames.
                if job.id not in self._cancel_reasons:
                    try:
                        outcome = await executor.run_job(job)
                    except Exception as exc:
                        outcome = await self._raised(job, executor, exc)
                        if outcome is None:
                            return  # refused: the pool decides where it goes
                    if outcome.job_id != job.id:
                        outcome = await self._stale(job, executor, outcome)
        except BaseException:
            self._interrupted(attempt, handle, executor, started)
            raise
        self._complete(attempt, handle, executor, outcome, started)

    def _begin_launch(
        self, handle: JobHandle
    ) -> tuple[JobExecutor, float, anyio.CancelScope | None, int]:
        """Takes the launch handed over to ``handle``, which begins now: its executor,
        start time, cancel scope (if any) and attempt. The action itself is dropped: a
        running job holds none."""
        action, handle._handover = handle._handover, None
        assert action is not None, f"no launch handed over to {handle.job.id}"
        job = handle.job
        executor = self._executors[action.executor_id]
        started = self._now()
        scope = self._run_scopes.get(job.id)
        if scope is not None and (timeout := self._timeout_of(job)) is not None:
            scope.deadline = started + timeout
        if self._observers.wants("executors_job_started"):
            self._observers.call(
                "executors_job_started",
                pool_name=self.name,
                job=job,
                executor_id=executor.id,
                attempt=action.attempt,
            )
        return executor, started, scope, action.attempt

    def _interrupted(
        self, attempt: int, handle: JobHandle, executor: JobExecutor, started: float
    ) -> None:
        """Cancelled from outside the run's scope (the caller of run() was cancelled, the
        job ran in its task): the job still gets its one outcome."""
        self._cancel_reasons.setdefault(handle.job.id, FailureReason.CANCELLED)
        self._complete(attempt, handle, executor, None, started)

    async def _raised(self, job: Job, executor: JobExecutor, error: Exception) -> JobOutcome | None:
        """``run_job`` raised. ``LaunchError``: the executor refused the job before
        accepting it, and the pool decides where it goes (another executor, or a failure
        after ``launch_attempts``); None. Anything else breaks the contract: the job may
        have run, so it is not retried, it ends CRASHED, and the executor is killed."""
        if isinstance(error, LaunchError):
            self._run_scopes.pop(job.id, None)
            logger.warning("pool %s: %s refused %s: %s", self.name, executor.id, job.id, error)
            self._perform(self._state.launch_failed(job.id, executor.id, error))
            return None
        logger.exception("pool %s: %s.run_job raised", self.name, executor.id, exc_info=error)
        await executor.kill()
        return JobOutcome.failure(job.id, FailureReason.CRASHED, RemoteError.from_exception(error))

    async def _stale(self, job: Job, executor: JobExecutor, outcome: JobOutcome) -> JobOutcome:
        """Another job's outcome (a stale reply): this job's is unknown, it ends CRASHED,
        and the executor is killed."""
        msg = (
            f"backend {self.backend.name!r}: executor {executor.id} answered "
            f"job {job.id} with the outcome of job {outcome.job_id}"
        )
        logger.error("pool %s: %s", self.name, msg)
        await executor.kill()
        error = RemoteError.from_exception(RuntimeError(msg))
        return JobOutcome.failure(job.id, FailureReason.CRASHED, error)

    def _complete(
        self,
        attempt: int,
        handle: JobHandle,
        executor: JobExecutor,
        outcome: JobOutcome | None,
        started: float,
    ) -> None:
        job_id = handle.job.id
        self._run_scopes.pop(job_id, None)
        cancel_reason = self._cancel_reasons.pop(job_id, None)
        kill_reason = self._kill_reasons.pop(executor.id, None)
        if outcome is None:
            # The run was cancelled: by a request (its reason), else by the deadline.
            reason: FailureReason | None = cancel_reason or FailureReason.TIMED_OUT
            status, value, error = status_of(reason), None, None
        else:
            status, reason = outcome.status, outcome.reason
            value, error = outcome.value, outcome.error
            if kill_reason is not None and not outcome.ok:
                status, reason = status_of(kill_reason), kill_reason
        final = JobOutcome(
            job_id=job_id,
            status=status,
            value=value,
            reason=reason,
            error=error,
            executor_id=executor.id,
            attempts=attempt,
            submitted_at=handle.submitted_at,
            started_at=started,
            finished_at=self._now(),
        )
        reusable = executor.state is _READY
        broken = _BROKEN
        if kill_reason is _POOL_CLOSED:
            broken = CloseReason.POOL_CLOSED  # killed by the end of a drain
        elif not reusable and executor.health().abandoned:
            broken = CloseReason.ABANDONED
        self._deliver(final)
        self._perform(
            self._state.job_ended(job_id, executor.id, status, reusable=reusable, broken=broken)
        )

    async def _close(self, action: CloseExecutor) -> None:
        executor = self._executors.get(action.executor_id)
        if executor is not None:
            # Closing must finish even while the pool is being cancelled: nothing leaks.
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.config.close_timeout) as graceful:
                    await executor.aclose()
                if graceful.cancelled_caught:
                    logger.warning(
                        "pool %s: %s did not close within close_timeout; killing",
                        self.name,
                        executor.id,
                    )
                    await executor.kill()
            del self._executors[action.executor_id]
            self._memory_warned_at.pop(action.executor_id, None)
            self._observers.call(
                "executors_executor_closed",
                pool_name=self.name,
                executor_id=action.executor_id,
                reason=action.reason.value,
            )
        self._perform(self._state.executor_closed(action.executor_id))

    def _cancel(self, job_id: str, reason: FailureReason) -> None:
        if job_id in self._handles:
            self._perform(self._state.cancel(job_id, reason))

    def _finish_unrun(self, action: FinishJob) -> None:
        handle = self._handles[action.job_id]
        # a cancel of a run that was then refused, of a job that now ends unrun
        self._cancel_reasons.pop(action.job_id, None)
        error = RemoteError.from_exception(action.error) if action.error else None
        outcome = attrs.evolve(
            JobOutcome.failure(action.job_id, action.reason, error),
            attempts=action.attempts,
            submitted_at=handle.submitted_at,
            finished_at=self._now(),
        )
        self._deliver(outcome)

    def _deliver(self, outcome: JobOutcome) -> None:
        handle = self._handles.pop(outcome.job_id)
        handle._set(outcome)
        if self._observers.wants("executors_job_finished"):
            self._observers.call(
                "executors_job_finished", pool_name=self.name, job=handle.job, outcome=outcome
            )

    def _report_unhealthy(self, action: ReportUnhealthy) -> None:
        logger.error(
            "pool %s is unhealthy: %d spawns failed in a row; last error: %s",
            self.name,
            action.consecutive_failures,
            action.error,
        )
        self._observers.call(
            "executors_pool_unhealthy",
            pool_name=self.name,
            consecutive_failures=action.consecutive_failures,
            error=action.error,
        )

    # -- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Every ``ping_interval``: check each executor's health; kill or retire the ones
        that died, stopped answering, or went over ``memory_limit_mb``."""
        while True:
            await anyio.sleep(self.config.ping_interval)
            for executor_id, record in list(self._state.executors.items()):
                executor = self._executors.get(executor_id)
                if executor is not None and record.slot in (Slot.IDLE, Slot.BUSY):
                    self._check_health(executor, record.slot)
            if self._observers.wants("executors_pool_statistics"):
                self._observers.call(
                    "executors_pool_statistics", pool_name=self.name, statistics=self.statistics()
                )

    async def _watch_exit(
        self, executor_id: str, wait_exited: Callable[[], Awaitable[None]]
    ) -> None:
        """Check an executor as soon as it is gone: if it died while the pool still
        counts on it, it is replaced now, not at the next health check."""
        await wait_exited()
        executor = self._executors.get(executor_id)
        record = self._state.executors.get(executor_id)
        if executor is not None and record is not None and record.slot in (Slot.IDLE, Slot.BUSY):
            self._check_health(executor, record.slot)

    def _check_health(self, executor: JobExecutor, slot: Slot) -> None:
        health = executor.health()
        cfg = self.config
        problem: tuple[FailureReason, CloseReason] | None = None
        if not health.alive:
            problem = (FailureReason.CRASHED, CloseReason.BROKEN)
        elif health.ping_latency is not None and health.ping_latency > cfg.ping_timeout:
            problem = (FailureReason.UNRESPONSIVE, CloseReason.UNRESPONSIVE)
        elif health.memory_mb is not None:
            if cfg.memory_limit_mb is not None and health.memory_mb > cfg.memory_limit_mb:
                problem = (FailureReason.MEMORY_LIMIT, CloseReason.MEMORY_LIMIT)
            elif cfg.memory_warn_mb is not None and health.memory_mb > cfg.memory_warn_mb:
                self._warn_memory(executor.id, health.memory_mb)
        if problem is None:
            return
        logger.warning("pool %s: %s is %s", self.name, executor.id, problem[1].value)
        if slot is Slot.IDLE:
            self._perform(self._state.retire(executor.id, problem[1]))
        elif health.alive and executor.id not in self._kill_reasons:
            self._kill_reasons[executor.id] = problem[0]
            self._tg.start_soon(executor.kill)

    def _warn_memory(self, executor_id: str, memory_mb: float) -> None:
        # At most one warning per executor a minute: a leaking job would flood the log.
        now = self._now()
        if now - self._memory_warned_at.get(executor_id, -60.0) >= 60.0:
            self._memory_warned_at[executor_id] = now
            logger.warning(
                "pool %s: %s uses %.0f MiB (memory_warn_mb = %s)",
                self.name,
                executor_id,
                memory_mb,
                self.config.memory_warn_mb,
            )


_pool_serial = itertools.count(1)
#: the plugins of the last pool opened and their observers (see _Observers.of)
_last_observers: tuple[tuple[object, ...], _Observers] | None = None


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


@asynccontextmanager
async def open_pool(
    config: PoolConfig | LoadedConfig | None = None,
    /,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    observers: Sequence[object] = (),
    **overrides: object,
) -> AsyncIterator[Pool]:
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
    loaded = _resolve_config(config, overrides)
    cfg = loaded.config
    registry = registry if registry is not None else default_registry()
    backend = registry.backend(cfg.backend)
    if cfg.entrypoint is None:
        msg = "no entrypoint configured: set entrypoint = 'module:function'"
        raise ConfigError(msg)
    check_runnable(cfg.entrypoint, backend.name, backend.capabilities, what="entrypoint")
    if cfg.setup is not None:
        resolve_callable(cfg.setup, what="setup")
    options: object = build_backend_options(backend.options, loaded)
    plugins = [plugin for _, plugin in registry.plugins()] + list(observers)
    # The block's own exception is re-raised after the task group has exited, so callers
    # see their exception, not an ExceptionGroup wrapping it.
    error: BaseException | None = None
    async with backend.open(cfg, options) as factory, anyio.create_task_group() as tg:
        pool = Pool(
            name or f"pool{next(_pool_serial)}", cfg, backend, factory, tg, _Observers.of(plugins)
        )
        pool._perform(pool._state.start())
        tg.start_soon(pool._supervise)
        try:
            yield pool
        except BaseException as exc:
            error = exc
        with anyio.CancelScope(shield=True):
            await pool.drain(timeout=0 if error is not None else None)
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
