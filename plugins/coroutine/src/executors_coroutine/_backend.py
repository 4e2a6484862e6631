from __future__ import annotations

import functools
import inspect
import itertools
import logging
import operator
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
    LaunchError,
    PoolConfig,
    RemoteError,
    resolve_callable,
)
from executors._clock import cancel_scope_class, checkpoint_function

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


_CANCEL_CALLED = operator.attrgetter("cancel_called")

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
    """One slot: runs one job at a time as a task of the host loop."""

    id: str
    _entrypoint: Callable[[JobContext], Any] = attrs.field(repr=False)
    _setup: _SharedSetup = attrs.field(repr=False)
    _watch: _LoopWatch = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    _setup_state: object = attrs.field(init=False, default=None, repr=False)
    # The running job's scope. Invariant: not None exactly while a job runs (BUSY).
    _scope: anyio.CancelScope | None = attrs.field(init=False, default=None, repr=False)
    # anyio.CancelScope for the host loop, looked up once (see executors._clock)
    _new_scope: Callable[[], anyio.CancelScope] = attrs.field(
        init=False, default=anyio.CancelScope, repr=False
    )
    _checkpoint: Callable[[], Awaitable[None]] = attrs.field(
        init=False, default=anyio.lowlevel.checkpoint, repr=False
    )

    async def start(self) -> None:
        self._new_scope = cancel_scope_class()
        self._checkpoint = checkpoint_function()
        self._setup_state = await self._setup.get()
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not ExecutorState.READY:
            msg = f"executor {self.id} cannot take job {job.id}: it is {self.state.value}"
            raise LaunchError(msg)
        self.state = ExecutorState.BUSY
        scope = self._scope = self._new_scope()
        ctx = JobContext(
            payload=job.payload,
            job_id=job.id,
            executor_id=self.id,
            state=self._setup_state,
            metadata=job.metadata,
            # a partial, smaller than a closure: every running job holds one
            cancel_check=functools.partial(_CANCEL_CALLED, scope),
        )
        self._watch.begin(job.id, self.id)
        # One frame for the whole job (no helper coroutine): every running job holds it.
        try:
            with scope:
                try:
                    value = await self._entrypoint(ctx)
                    # A job that never awaited has not yielded yet: the contract asks for it.
                    await self._checkpoint()
                except Exception as exc:
                    error = RemoteError.from_exception(exc)
                    return JobOutcome.failure(job.id, FailureReason.RAISED, error)
                return JobOutcome.success(job.id, value)
            # Only kill() cancels this scope; the pool's own cancellation passes through.
            return JobOutcome.failure(job.id, FailureReason.KILLED)
        finally:
            self._watch.end(job.id)
            self._scope = None
            if self.state is ExecutorState.BUSY:
                self.state = ExecutorState.READY

    async def aclose(self) -> None:
        await self.kill()

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        if self._scope is not None:
            self._scope.cancel()

    def health(self) -> Health:
        return Health(alive=self.state is not ExecutorState.CLOSED)


@attrs.define(eq=False)
class _Factory:
    entrypoint: Callable[[JobContext], Any]
    setup: _SharedSetup
    watch: _LoopWatch

    def create_executor(self, executor_id: str) -> CoroutineExecutor:
        return CoroutineExecutor(executor_id, self.entrypoint, self.setup, self.watch)


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
        watch = _LoopWatch()
        if options.loop_lag_warn is None:
            yield _Factory(entrypoint, _SharedSetup(setup), watch)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.watch, options.loop_lag_warn, options.loop_lag_interval)
            yield _Factory(entrypoint, _SharedSetup(setup), watch)
            tg.cancel_scope.cancel()
