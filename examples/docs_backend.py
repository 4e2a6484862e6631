# examples/docs_backend.py
"""Backend "to-thread": each job runs in its own anyio.to_thread.run_sync call."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from executors.backend import (
    Capabilities,
    ExecutorState,
    FailureReason,
    Health,
    JobContext,
    JobOutcome,
    RemoteError,
    hookimpl,
    not_ready,
    resolve_callable,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from executors.backend import Backend, ExecutorFactory, Job, PoolConfig


@attrs.frozen
class ToThreadOptions:
    """The [tool.executors.to-thread] table."""

    #: jobs running at once in threads; None: max_executors
    max_threads: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )


@attrs.define(eq=False)
class ToThreadExecutor:
    id: str
    _entrypoint: Callable[[JobContext], Any] = attrs.field(repr=False)
    _setup: Callable[[], object] | None = attrs.field(repr=False)
    _limiter: anyio.CapacityLimiter = attrs.field(repr=False)
    #: how long a cancelled job may take to stop before its thread is abandoned
    _close_timeout: float = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    #: a job ignored cancellation past close_timeout: its thread runs on, the slot is gone
    abandoned: bool = attrs.field(init=False, default=False)
    _setup_state: object = attrs.field(init=False, default=None, repr=False)
    # Set by kill() and aclose(): a thread cannot be stopped, only asked to stop.
    _stop: threading.Event = attrs.field(init=False, factory=threading.Event, repr=False)
    # The running job's wait for its thread, which kill() cancels; None between runs.
    _wait: anyio.CancelScope | None = attrs.field(init=False, default=None, repr=False)

    async def start(self) -> None:
        if self._setup is not None:
            # A cancelled start waits for the setup's thread: nothing outlives it.
            self._setup_state = await anyio.to_thread.run_sync(self._setup)
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not ExecutorState.READY:
            raise not_ready(self.id, job.id, self.state)
        self.state = ExecutorState.BUSY
        run = _Run()
        ctx = JobContext(
            payload=job.payload,
            job_id=job.id,
            executor_id=self.id,
            state=self._setup_state,
            metadata=job.metadata,
            cancel_check=lambda: run.stop.is_set() or self._stop.is_set(),
        )
        try:
            with anyio.CancelScope() as self._wait:
                outcome = await anyio.to_thread.run_sync(
                    run.call, self._entrypoint, ctx, limiter=self._limiter, abandon_on_cancel=True
                )
                # A cancellation that came while the thread ran is raised here, so the pool
                # reports the job TIMED_OUT or CANCELLED even when it returned early.
                await anyio.lowlevel.checkpoint()
                return outcome
            # Killed: the run ends now, failed; a job that ignores the request to stop
            # runs on in its thread, and the slot is given up.
            self.abandoned = run.cancel() and not run.returned.is_set()
            return JobOutcome.failure(job.id, FailureReason.KILLED)
        except BaseException:
            # Cancelled: ask the job to stop and give it close_timeout to, so that none
            # of its code runs once run_job has returned; else give the slot up.
            if run.cancel():
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(run.returned.wait, self._close_timeout)
                if not run.returned.is_set():
                    self.abandoned = True
                    self.state = ExecutorState.CLOSED
            raise
        finally:
            self._wait = None
            if self.state is ExecutorState.BUSY:
                self.state = ExecutorState.READY

    async def aclose(self) -> None:
        await self.kill()

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        self._stop.set()
        if self._wait is not None:
            self._wait.cancel()

    def health(self) -> Health:
        alive = self.state is not ExecutorState.CLOSED
        return Health(alive=alive, abandoned=self.abandoned)


@attrs.define(eq=False)
class _Run:
    """One job between the host and its thread."""

    #: set by the host when the run is cancelled: the job's cancel_requested
    stop: threading.Event = attrs.field(factory=threading.Event)
    #: set by the thread once the job's code has returned
    returned: threading.Event = attrs.field(factory=threading.Event)
    # Which came first, the thread beginning the job or the host cancelling the run;
    # under the lock, so that a job cancelled before it began never begins.
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _began: bool = False

    def cancel(self) -> bool:
        """Ask the job to stop; whether it began (and may still be running)."""
        with self._lock:
            self.stop.set()
            return self._began

    def call(self, entrypoint: Callable[[JobContext], Any], ctx: JobContext) -> JobOutcome:
        """Runs in the worker thread: whatever the job raises becomes its outcome there,
        BaseExceptions (SystemExit, GeneratorExit...) included."""
        with self._lock:
            if self.stop.is_set():  # cancelled before it began: it never does
                return JobOutcome.failure(ctx.job_id, FailureReason.CANCELLED)
            self._began = True
        try:
            value = entrypoint(ctx)
        except BaseException as exc:
            error = RemoteError.from_exception(exc)
            return JobOutcome.failure(ctx.job_id, FailureReason.RAISED, error)
        finally:
            self.returned.set()
        return JobOutcome.success(ctx.job_id, value)


@attrs.frozen
class _Factory:
    entrypoint: Callable[[JobContext], Any]
    setup: Callable[[], object] | None
    limiter: anyio.CapacityLimiter
    close_timeout: float

    def create_executor(self, executor_id: str) -> ToThreadExecutor:
        return ToThreadExecutor(
            executor_id, self.entrypoint, self.setup, self.limiter, self.close_timeout
        )


_CAPABILITIES = Capabilities(
    isolates_crashes=False,  # a job shares the process with the host
    can_kill_running_job=False,  # a thread cannot be killed
    measures_memory=False,
    sync_entrypoints=True,
    async_entrypoints=False,
)


@attrs.frozen
class ToThreadBackend:
    name: str = "to-thread"
    capabilities: Capabilities = _CAPABILITIES
    options: type = ToThreadOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert isinstance(options, ToThreadOptions)
        assert config.entrypoint is not None, "the pool checks the entrypoint before open()"
        entrypoint = resolve_callable(config.entrypoint, what="entrypoint")
        setup = resolve_callable(config.setup, what="setup") if config.setup else None
        limiter = anyio.CapacityLimiter(options.max_threads or config.max_executors)
        yield _Factory(entrypoint, setup, limiter, config.close_timeout)


@hookimpl
def executors_register_backends(register: Callable[[Backend], None]) -> None:
    register(ToThreadBackend())
