from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from executors import (
    Capabilities,
    ExecutorFactory,
    ExecutorState,
    FailureReason,
    Health,
    Job,
    JobContext,
    JobOutcome,
    PoolConfig,
    RemoteError,
    resolve_callable,
)
from executors.backend import not_ready, on_asyncio

from ._loops import cancel_scope_class, checkpoint_function

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

_CAPABILITIES = Capabilities(
    isolates_crashes=False,
    can_kill_running_job=True,
    measures_memory=False,
    sync_entrypoints=False,
    async_entrypoints=True,
    reusable=True,
    remote=False,
    setup_per_pool=True,
)


logger = logging.getLogger("executors.coroutine")


_DEFAULT_LAG_WARN: float | None = 0.5


@attrs.frozen(kw_only=True)
class CoroutineOptions:
    """Options of the coroutine backend (``[tool.executors.coroutine]``)."""

    #: warn when the host event loop was blocked this long (seconds); ``None`` disables
    #: the watchdog. The warning names the jobs that ran while the loop was blocked.
    loop_lag_warn: float | None = attrs.field(
        default=_DEFAULT_LAG_WARN, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    #: how often the watchdog checks the loop (seconds)
    loop_lag_interval: float = attrs.field(default=0.1, validator=attrs.validators.gt(0.0))


@attrs.define(eq=False)
class _LoopWatch:
    """Knows which jobs ran since the watchdog last woke, to name the one that blocked
    the loop: a job that blocks has usually returned by the time the watchdog runs."""

    # job id -> executor id, for jobs running now
    running: dict[str, str] = attrs.field(factory=dict)
    # jobs that ran at some point since the last tick (running ones included)
    recent: dict[str, str] = attrs.field(factory=dict)

    def begin(self, job_id: str, executor_id: str) -> None:
        self.running[job_id] = self.recent[job_id] = executor_id

    def end(self, job_id: str) -> None:
        self.running.pop(job_id, None)

    async def watch(self, warn_after: float, interval: float) -> None:
        while True:
            self.recent = dict(self.running)
            before = anyio.current_time()
            await anyio.sleep(interval)
            lag = anyio.current_time() - before - interval
            if lag >= warn_after:
                suspects = _named(self.recent)
                logger.warning(
                    "the event loop was blocked for %.3f s (loop_lag_warn = %s s); "
                    "jobs that ran meanwhile: %s",
                    lag,
                    warn_after,
                    suspects,
                )


#: what a job's code may raise that is not the job's own ending: a cancellation (the
#: pool's, or a kill's), and KeyboardInterrupt, which in the host's loop may be the
#: host's own Ctrl-C. Every other BaseException (SystemExit, GeneratorExit, ...) ends the
#: job RAISED, as an Exception does: it must not end the host.
_HOSTS = (asyncio.CancelledError, KeyboardInterrupt)


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None, "run_job() runs in a task"
    return task


#: jobs named in a loop-lag warning; more are counted, not listed
_SUSPECTS_SHOWN = 10


def _named(jobs: dict[str, str]) -> str:
    """'pool1-job-3 on pool1-1, ...' for the first jobs, and how many more there were: a
    warning stays one readable line however many jobs ran."""
    shown = [
        f"{job} on {executor}" for job, executor in itertools.islice(jobs.items(), _SUSPECTS_SHOWN)
    ]
    more = len(jobs) - len(shown)
    if more > 0:
        shown.append(f"and {more} more")
    return ", ".join(shown) or "none"


@attrs.define(eq=False)
class _SharedSetup:
    """Runs the pool's setup once, on the first executor start, and shares its result.

    A setup that fails (or is cancelled by ``initialize_timeout``) is tried again by the
    next start, so a transient failure does not poison the pool.
    """

    function: Callable[[], object] | None
    _lock: anyio.Lock = attrs.field(init=False, factory=anyio.Lock)
    _done: bool = attrs.field(init=False, default=False)
    _state: object = attrs.field(init=False, default=None)

    async def get(self) -> object:
        async with self._lock:
            if not self._done and self.function is not None:
                state = self.function()
                if inspect.isawaitable(state):
                    state = await state
                self._state = state
            self._done = True
        return self._state


@attrs.define(eq=False)
class CoroutineExecutor:
    """One slot: runs one job at a time, in the task that calls ``run_job`` (the pool's
    caller's, for ``Pool.run``). How a kill reaches that task depends on the host loop:
    see the subclasses."""

    id: str
    _entrypoint: Callable[[JobContext], Any] = attrs.field(repr=False)
    _setup: _SharedSetup = attrs.field(repr=False)
    # None when the watchdog is off: nothing to record per job then
    _watch: _LoopWatch | None = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    _setup_state: object = attrs.field(init=False, default=None, repr=False)
    # Every job's ctx.cancel_check: made once, so a running job holds none of its own.
    _cancel_check: Callable[[], bool] = attrs.field(init=False, repr=False)
    _checkpoint: Callable[[], Awaitable[None]] = attrs.field(
        init=False, default=anyio.lowlevel.checkpoint, repr=False
    )

    def __attrs_post_init__(self) -> None:
        self._cancel_check = self._killed

    def _killed(self) -> bool:
        # A running job is asked to stop only by kill() (the pool's own cancellation of an
        # async job is raised in it): the slot is CLOSED from then on.
        return self.state is ExecutorState.CLOSED

    async def start(self) -> None:
        self._checkpoint = checkpoint_function()
        self._setup_state = await self._setup.get()
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    def _begin(self, job: Job) -> JobContext:
        if self.state is not ExecutorState.READY:
            raise not_ready(self.id, job.id, self.state)
        self.state = ExecutorState.BUSY
        if self._watch is not None:
            self._watch.begin(job.id, self.id)
        return JobContext(
            payload=job.payload,
            job_id=job.id,
            executor_id=self.id,
            state=self._setup_state,
            metadata=job.metadata,
            cancel_check=self._cancel_check,
        )

    def _end(self, job: Job) -> None:
        if self._watch is not None:
            self._watch.end(job.id)
        if self.state is ExecutorState.BUSY:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.kill()

    async def kill(self) -> None:
        raise NotImplementedError

    def health(self) -> Health:
        return Health(alive=self.state is not ExecutorState.CLOSED)


@attrs.define(eq=False)
class _AsyncioExecutor(CoroutineExecutor):
    """On asyncio, a kill cancels the job's task as asyncio does (``Task.cancel()``), and
    the run takes that cancellation back (``Task.uncancel()``): a running job holds no
    cancel scope. A kill is a kill: like the caller's own ``Task.cancel()``, it does not
    wait for an anyio shield inside the job."""

    # The task running the job. Invariant: not None exactly while a job runs (BUSY).
    _task: asyncio.Task[Any] | None = attrs.field(init=False, default=None, repr=False)
    # kill() cancelled _task once; the run owes it one uncancel().
    _kill_sent: bool = attrs.field(init=False, default=False, repr=False)

    async def run_job(self, job: Job) -> JobOutcome:
        ctx = self._begin(job)
        task = self._task = _current_task()
        # The task's cancellation requests when the job began: one left over once a kill's
        # is taken back is someone else's (the caller's, an anyio scope's), never swallowed.
        cancelling = task.cancelling()
        try:
            value = await self._entrypoint(ctx)
            # A job that never awaited has not yielded yet: the contract asks for it.
            await self._checkpoint()
        except Exception as exc:
            self._finish(job, task, cancelling)
            return JobOutcome.failure(job.id, FailureReason.RAISED, RemoteError.from_exception(exc))
        except BaseException as exc:
            killed = self._finish(job, task, cancelling)
            if isinstance(exc, _HOSTS):
                if killed and isinstance(exc, asyncio.CancelledError):
                    return JobOutcome.failure(job.id, FailureReason.KILLED)
                raise
            # SystemExit, GeneratorExit, any other BaseException: the job's own ending
            return JobOutcome.failure(job.id, FailureReason.RAISED, RemoteError.from_exception(exc))
        self._finish(job, task, cancelling)
        return JobOutcome.success(job.id, value)

    def _finish(self, job: Job, task: asyncio.Task[Any], cancelling: int) -> bool:
        """Ends the run and takes back a kill's cancellation: True when the kill's was the
        task's only new one (a run that ends cancelled then ends KILLED)."""
        self._task = None
        self._end(job)
        if not self._kill_sent:
            return False
        self._kill_sent = False
        return task.uncancel() <= cancelling

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        # Sent once. It lands in the job: the task is suspended in it, or, when the job
        # kills its own slot, awaits again in it or in the checkpoint after it.
        if self._task is not None and not self._kill_sent:
            self._kill_sent = True
            self._task.cancel()


@attrs.define(eq=False)
class _TrioExecutor(CoroutineExecutor):
    """On trio, a kill cancels the scope the job runs in."""

    # The running job's scope. Invariant: not None exactly while a job runs (BUSY).
    _scope: anyio.CancelScope | None = attrs.field(init=False, default=None, repr=False)
    # anyio.CancelScope for the host loop, looked up once (see executors._clock)
    _new_scope: Callable[[], anyio.CancelScope] = attrs.field(
        init=False, default=anyio.CancelScope, repr=False
    )
    # trio's Cancelled, looked up once: the one BaseException of a job's that is not its own
    _cancelled: type[BaseException] = attrs.field(init=False, default=BaseException, repr=False)

    async def start(self) -> None:
        self._new_scope = cancel_scope_class()
        self._cancelled = anyio.get_cancelled_exc_class()
        await super().start()

    async def run_job(self, job: Job) -> JobOutcome:
        ctx = self._begin(job)
        scope = self._scope = self._new_scope()
        try:
            with scope:
                try:
                    value = await self._entrypoint(ctx)
                    # A job that never awaited has not yielded yet: the contract asks for it.
                    await self._checkpoint()
                except Exception as exc:
                    error = RemoteError.from_exception(exc)
                    return JobOutcome.failure(job.id, FailureReason.RAISED, error)
                except BaseException as exc:
                    if isinstance(exc, (self._cancelled, KeyboardInterrupt)):
                        raise
                    # SystemExit, GeneratorExit, any other BaseException: the job's own
                    error = RemoteError.from_exception(exc)
                    return JobOutcome.failure(job.id, FailureReason.RAISED, error)
                return JobOutcome.success(job.id, value)
            # Only kill() cancels this scope; the pool's own cancellation passes through.
            return JobOutcome.failure(job.id, FailureReason.KILLED)
        finally:
            self._scope = None
            self._end(job)

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        if self._scope is not None:
            self._scope.cancel()


@attrs.define(eq=False)
class _Factory:
    entrypoint: Callable[[JobContext], Any]
    setup: _SharedSetup
    watch: _LoopWatch | None
    # the executor class for the host loop
    executor: type[CoroutineExecutor]

    def create_executor(self, executor_id: str) -> CoroutineExecutor:
        return self.executor(executor_id, self.entrypoint, self.setup, self.watch)


def _executor_class() -> type[CoroutineExecutor]:
    return _AsyncioExecutor if on_asyncio() else _TrioExecutor


@attrs.frozen
class CoroutineBackend:
    """Backend ``coroutine``: executors are task slots in the host event loop."""

    name: str = "coroutine"
    capabilities: Capabilities = _CAPABILITIES
    options: type = CoroutineOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert config.entrypoint is not None, "the pool checks the entrypoint before open()"
        entrypoint = resolve_callable(config.entrypoint, what="entrypoint")
        setup = resolve_callable(config.setup, what="setup") if config.setup else None
        assert isinstance(options, CoroutineOptions)
        executor = _executor_class()
        if options.loop_lag_warn is None:
            yield _Factory(entrypoint, _SharedSetup(setup), None, executor)
            return
        watch = _LoopWatch()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.watch, options.loop_lag_warn, options.loop_lag_interval)
            yield _Factory(entrypoint, _SharedSetup(setup), watch, executor)
            tg.cancel_scope.cancel()
