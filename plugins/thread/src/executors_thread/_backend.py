from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.lowlevel
import attrs
import sniffio

from executors import (
    Capabilities,
    ExecutorsError,
    ExecutorState,
    FailureReason,
    Health,
    JobContext,
    JobOutcome,
    RemoteError,
    resolve_callable,
)
from executors.backend import (
    describe_os_error,
    event_class,
    loop_clock,
    not_ready,
    on_asyncio,
    task_limits,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectSendStream

    from executors import ExecutorFactory, Job, PoolConfig

logger = logging.getLogger("executors.thread")


class ThreadStartError(ExecutorsError, RuntimeError):
    """Raised by ``start()`` when the executor's thread could not be started: the host
    reached a limit on its tasks (threads count as tasks), or memory is short."""


Loop = Literal["asyncio", "trio"]

# The states run_job() moves between, looked up once: an Enum member read off its class
# runs Python code (on Python 3.11), and run_job reads four a job.
_READY, _BUSY = ExecutorState.READY, ExecutorState.BUSY

_CAPABILITIES = Capabilities(
    isolates_crashes=False,
    can_kill_running_job=False,
    measures_memory=False,
    sync_entrypoints=True,
    async_entrypoints=True,
    reusable=True,
    remote=False,
    setup_per_pool=False,
)


@attrs.frozen(kw_only=True)
class ThreadOptions:
    """Options of the thread backend (``[tool.executors.thread]``)."""

    #: the event loop each executor thread runs its async jobs on: "asyncio" or "trio"
    loop: Loop = attrs.field(default="asyncio", validator=attrs.validators.in_(("asyncio", "trio")))


#: Schedules ``callback(*args)`` on an event loop from any thread, without waiting for
#: it: the loop's own method (asyncio's ``call_soon_threadsafe``, trio's
#: ``run_sync_soon``). A thread without a loop is posted to through its queue's ``put``,
#: which takes the callback alone.
Post = Callable[..., object]


def _poster() -> Post:
    """How to schedule a callback on the running event loop from another thread."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


def _post_quietly(post: Post, callback: Callable[..., object], *args: object) -> None:
    # The loop may be gone (the pool closed while an abandoned job ran on): nobody
    # waits for the callback any more (asyncio: RuntimeError, trio: RunFinishedError).
    # A try statement, not contextlib.suppress: this runs twice a job.
    try:  # noqa: SIM105 -- see above
        post(callback, *args)
    except Exception:
        pass


class _Done(Protocol):
    """Set once on the host's loop when a run's outcome is known; what anyio.Event does."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[None]: ...


class _FutureDone:
    """A run's _Done on asyncio, as one bare future of the host's loop: anyio's Event
    wraps asyncio's, which makes a future per wait and keeps a deque of them (this is
    set and awaited once a job)."""

    __slots__ = ("_future", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()
        self._set = False

    def set(self) -> None:
        self._set = True
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> asyncio.Future[None]:
        # The future itself is awaited, with no coroutine around it.
        if self._future.cancelled():
            # A cancelled wait cancelled it: a later wait (the run's stop) gets a fresh
            # one, done already if the outcome came meanwhile.
            self._future = self._future.get_loop().create_future()
            if self._set:
                self._future.set_result(None)
        return self._future


class _Outcomes:
    """Where the threads of one pool's executors report outcomes, on an asyncio host
    with ``os.eventfd`` (Linux): a deque, and an eventfd the host's loop watches. A
    thread appends its run and outcome and writes the eventfd; the loop's reader reads
    it and settles every run reported since. Quicker than ``call_soon_threadsafe``,
    whose wake-up goes through the loop's self-pipe (a send, then two receives and an
    exception on the loop's side, against one write and one read), and outcomes that
    come together are settled in one pass."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._reported: collections.deque[tuple[_Run, JobOutcome]] = collections.deque()
        # Held to report, and to close: a thread that reports once the pool has gone (an
        # abandoned job that finally returned) never writes to a closed descriptor, or
        # to another file that reuses its number.
        self._lock = threading.Lock()
        self._closed = False
        loop.add_reader(fd, self._settle_reported)

    @classmethod
    def on_this_loop(cls) -> _Outcomes | None:
        """A channel on the running loop; None where there is none to make (trio, no
        eventfd, no descriptor left): the threads then report with the loop's own
        ``call_soon_threadsafe`` / ``run_sync_soon``."""
        if not on_asyncio() or not hasattr(os, "eventfd"):
            return None
        try:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError as exc:
            logger.debug("thread outcomes go through the loop's own wake-up: %s", exc)
            return None
        return cls(asyncio.get_running_loop(), fd)

    def report(self, run: _Run, outcome: JobOutcome) -> None:
        """From any thread: ``run`` ended with ``outcome``."""
        with self._lock:
            if self._closed:  # the pool is gone: nobody waits for it
                return
            self._reported.append((run, outcome))
            os.eventfd_write(self._fd, 1)

    def _settle_reported(self) -> None:
        # The loop's reader, which runs only while the channel is open. The count is read
        # before the deque is emptied: a report made meanwhile is settled now or wakes
        # the loop again, never lost.
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)
        reported = self._reported
        while reported:
            _settle(*reported.popleft())

    def close(self) -> None:
        """On the host's loop, once the pool's executors are closed: every run has
        returned by then, and what a thread still reports is dropped."""
        with self._lock:
            self._closed = True
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
        self._reported.clear()


def _done_maker() -> Callable[[], _Done]:
    """How to make a run's _Done on the loop this is called on."""
    if on_asyncio():
        loop = asyncio.get_running_loop()
        return lambda: _FutureDone(loop)
    return event_class()


@attrs.define(eq=False)
class _Run:
    """One job handed to the thread, and what came of it."""

    # None once the thread's outcome is settled: the thread may still hold its run for a
    # moment after it reported (until it takes the next), never the job's payload.
    job: Job | None
    job_id: str
    # set on the host's loop when the outcome is known; made once the job is on its way
    # (see run_job)
    done: _Done = attrs.field(init=False)
    outcome: JobOutcome | None = None
    cancel_requested: bool = False
    # the cancel scope of an async job, on the thread's loop
    scope: anyio.CancelScope | None = None
    # The job's context, made by the host while the thread wakes up (see run_job). A
    # thread that finds none yet makes its own: the host holds the interpreter lock
    # until it waits, so that does not happen in practice, and nothing depends on it.
    context: JobContext | None = None


@attrs.define(eq=False)
class ThreadExecutor:
    """One thread for its whole life: a loop over a queue of calls (sync entrypoint and
    setup), or an event loop of its own (an async entrypoint or setup)."""

    id: str
    _entrypoint: Callable[..., Any] = attrs.field(repr=False)
    _setup: Callable[[], object] | None = attrs.field(repr=False)
    _loop: Loop = "asyncio"
    #: the entrypoint is ``async def``: its jobs run as tasks of the thread's loop
    _is_async: bool = False
    #: how long a cancelled job may take to stop before its thread is abandoned
    _close_timeout: float = 10.0
    state: ExecutorState = ExecutorState.STARTING
    #: True once a job ignored cancellation past close_timeout: the thread runs on
    abandoned: bool = False
    _thread: threading.Thread | None = attrs.field(init=False, default=None, repr=False)
    # With a sync entrypoint and a sync setup (or none), the thread runs no event loop:
    # it takes jobs (their _Run) and callables from this queue (None: stop), a quicker
    # hand-off than waking a loop. Otherwise None, and the thread runs its loop.
    _queue: queue.SimpleQueue[_Run | Callable[[], object] | None] | None = attrs.field(
        init=False, default=None, repr=False
    )
    # Schedules work on the host's loop / on the thread's loop (set once it runs).
    _host_post: Post | None = attrs.field(init=False, default=None, repr=False)
    _thread_post: Post | None = attrs.field(init=False, default=None, repr=False)
    _inbox: MemoryObjectSendStream[_Run | None] | None = attrs.field(
        init=False, default=None, repr=False
    )
    _started: anyio.Event = attrs.field(init=False, factory=anyio.Event, repr=False)
    _start_error: BaseException | None = attrs.field(init=False, default=None)
    # Set by the host before it looks for the thread's inbox to send the stop; read by the
    # thread after it published its inbox. Whichever order the two threads run in, the
    # thread either gets the stop or sees this flag, and ends.
    _stopping: bool = attrs.field(init=False, default=False, repr=False)
    _setup_scope: anyio.CancelScope | None = attrs.field(init=False, default=None, repr=False)
    _stopped: anyio.Event = attrs.field(init=False, factory=anyio.Event, repr=False)
    _state_value: object = attrs.field(init=False, default=None, repr=False)
    _run: _Run | None = attrs.field(init=False, default=None, repr=False)
    _ping_sent: float | None = attrs.field(init=False, default=None, repr=False)
    # the host loop's clock, looked up once (see executors._clock)
    _clock: Callable[[], float] = attrs.field(init=False, default=time.monotonic, repr=False)
    # makes a run's _Done for the host loop, looked up once (see _done_maker)
    _new_done: Callable[[], _Done] = attrs.field(init=False, default=anyio.Event, repr=False)
    _last_rtt: float | None = attrs.field(init=False, default=None, repr=False)
    #: where the thread reports outcomes (see _Outcomes); None: through _host_post
    _outcomes: _Outcomes | None = attrs.field(default=None, repr=False)

    # -- JobExecutor -----------------------------------------------------------------------

    async def start(self) -> None:
        self._host_post = _poster()
        self._new_done = _done_maker()
        self._clock = loop_clock()
        main = self._main
        if not self._is_async and (self._setup is None or not _is_async(self._setup)):
            jobs = self._queue = queue.SimpleQueue()
            self._thread_post = jobs.put
            main = self._main_without_loop
        thread = threading.Thread(target=main, name=f"executors-thread-{self.id}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            # Nothing was started, so nothing is left to close.
            self.state = ExecutorState.CLOSED
            msg = (
                f"cannot start the thread of executor {self.id}: {exc} "
                f"({task_limits()}, or memory is short)"
            )
            raise ThreadStartError(msg) from exc
        self._thread = thread
        try:
            await self._started.wait()
        except BaseException:
            # Cancelled (initialize_timeout, drain): an async setup is cancelled, a sync
            # one cannot be interrupted; the thread stops once it returns.
            self._stop_thread()
            raise
        if self._start_error is not None:
            # The thread ends right after it reports a failed start (a failed setup, a
            # loop that could not be made): wait for it, so that the error reaches the
            # pool with nothing left behind, not while the thread is still returning.
            await self._thread_ended()
            raise self._start_error
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not _READY or self._thread_post is None:
            raise not_ready(self.id, job.id, self.state)
        run = _Run(job, job.id)
        jobs = self._queue
        if jobs is not None:
            jobs.put(run)  # the thread runs it as it takes it: see _main_without_loop
        elif self._is_async:
            self._post_to_thread(run)
        else:
            _post_quietly(self._thread_post, self._run_sync, run)
        # The rest needs no thread, and is done while the job's thread wakes up: that
        # time is spent waiting anyway. The thread reports through callbacks on the
        # host's loop, which runs none of them before this task waits below.
        run.done = self._new_done()
        run.context = self._context(run)
        self._run = run
        self.state = _BUSY
        try:
            await run.done.wait()
        except BaseException:
            await self._stop_job(run)
            raise
        finally:
            self._run = None
            # run -> context -> its cancel_check -> run: a cycle that would hold the
            # payload until the collector's next full pass
            run.context = None
        assert run.outcome is not None
        if self.state is _BUSY:
            self.state = _READY
        return run.outcome

    async def aclose(self) -> None:
        if self.state is ExecutorState.CLOSED:
            return
        self.state = ExecutorState.CLOSING
        self._stop_thread()
        await self._thread_ended()

    async def _thread_ended(self) -> None:
        """Returns once the thread, told to stop or done, has ended; the executor is
        CLOSED."""
        if self._thread is not None:
            await self._stopped.wait()
            # The thread has only to return now: once closed, it is gone (never alive
            # in health(), never left behind for a leak check).
            self._thread.join()
        self.state = ExecutorState.CLOSED

    async def kill(self) -> None:
        # A thread cannot be killed: ask its job to stop and its loop to end, and let it
        # finish on its own. It is a daemon, so it never holds up interpreter exit.
        run = self._run
        if run is not None:
            self._request_cancel(run)
            if not run.done.is_set():
                self._abandon("it was killed while its job ran (the job was asked to stop)")
                # run_job must return promptly after kill(): the job ends ABANDONED now
                # (the pool reports the reason it killed for), whatever the thread does.
                run.outcome = JobOutcome.failure(run.job_id, FailureReason.ABANDONED)
                run.done.set()
        self._stop_thread()
        self.state = ExecutorState.CLOSED

    def health(self) -> Health:
        alive = self._thread is not None and self._thread.is_alive() and not self.abandoned
        return Health(alive=alive, ping_latency=self._ping_latency(), abandoned=self.abandoned)

    # -- host side ---------------------------------------------------------------------------

    async def _stop_job(self, run: _Run) -> None:
        """The pool cancelled the run: ask the job to stop, give it close_timeout to do so,
        else abandon the thread. Shielded: the job's outcome must be known before leaving."""
        self._request_cancel(run)
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
            await run.done.wait()
        if not run.done.is_set():
            self._abandon(f"its job ignored cancellation for {self._close_timeout} s")
        elif self.state is ExecutorState.BUSY:
            self.state = ExecutorState.READY

    def _abandon(self, why: str) -> None:
        if not self.abandoned:
            self.abandoned = True
            self.state = ExecutorState.CLOSED
            # aclose() does nothing once CLOSED: the thread's loop must be told now to end
            # once the job returns, or the thread would wait for jobs forever.
            self._stop_thread()
            logger.warning(
                "executor %s abandoned: %s; the thread runs on as a daemon until its job returns",
                self.id,
                why,
            )

    def _request_cancel(self, run: _Run) -> None:
        run.cancel_requested = True
        scope = run.scope
        if scope is not None and self._thread_post is not None:
            _post_quietly(self._thread_post, scope.cancel)

    def _post_to_thread(self, item: _Run | None) -> None:
        inbox, post = self._inbox, self._thread_post
        if inbox is not None and post is not None:
            _post_quietly(post, lambda: _send_nowait(inbox, item))

    def _stop_thread(self) -> None:
        self._stopping = True
        if self._queue is not None:
            self._queue.put(None)
            return
        scope, post = self._setup_scope, self._thread_post
        if scope is not None and post is not None:
            _post_quietly(post, scope.cancel)
        self._post_to_thread(None)

    def _ping_latency(self) -> float | None:
        run = self._run
        if run is not None and run.scope is None:
            # A sync job holds the thread: its loop cannot answer, and long sync jobs are
            # normal for threads. Not measured meanwhile.
            return None
        post = self._thread_post
        if post is None:
            return None
        now = self._clock()
        if self._ping_sent is None:
            self._ping_sent = now
            host = self._host_post
            assert host is not None
            _post_quietly(post, lambda: _post_quietly(host, self._pong))
            return self._last_rtt
        return max(now - self._ping_sent, self._last_rtt or 0.0)

    def _pong(self) -> None:
        # A callback on the host's loop, outside any task: anyio cannot tell the loop
        # there, so the clock is the one _ping_latency read in the host's task.
        if self._ping_sent is not None:
            self._last_rtt = self._clock() - self._ping_sent
            self._ping_sent = None

    # -- thread side ---------------------------------------------------------------------------

    def _main_without_loop(self) -> None:
        """The thread of a sync entrypoint with a sync setup: runs what the queue brings
        (jobs, pings) until it brings None."""
        jobs = self._queue
        assert jobs is not None
        try:
            try:
                if not self._stopping:
                    value = self._setup() if self._setup else None
                    if inspect.isawaitable(value):  # a def that returns an awaitable
                        value = anyio.run(_awaited, value, backend=self._loop)
                    self._state_value = value
            except BaseException as exc:
                self._start_error = exc
                return
            finally:
                self._to_host(self._started.set)
            # A job comes as its _Run (no callable is made for it), anything else as
            # a callable.
            while (item := jobs.get()) is not None:
                if isinstance(item, _Run):
                    self._run_sync(item)
                else:
                    item()
                item = None  # a job's payload is not kept until the next job comes
        finally:
            self._to_host(self._stopped.set)

    def _main(self) -> None:
        serving = False

        async def serve() -> None:
            nonlocal serving
            serving = True
            await self._serve()

        try:
            anyio.run(serve, backend=self._loop)
        except Exception as exc:
            if serving:
                raise
            # The thread's event loop could not be made: the start fails, saying why.
            msg = f"cannot start the {self._loop} event loop of executor {self.id}: "
            msg += describe_os_error(exc) if isinstance(exc, OSError) else repr(exc)
            error = ThreadStartError(msg)
            error.__cause__ = exc
            self._start_error = error
            self._to_host(self._started.set)
        finally:
            self._to_host(self._stopped.set)

    async def _serve(self) -> None:
        send, receive = anyio.create_memory_object_stream[_Run | None](float("inf"))
        with send, receive:
            self._inbox, self._thread_post = send, _poster()
            try:
                # A cancelled start() cancels an async setup here (a sync one cannot be
                # interrupted: the thread stops once it returns).
                with anyio.CancelScope() as self._setup_scope:
                    if not self._stopping:
                        self._state_value = await _call(self._setup) if self._setup else None
            except BaseException as exc:
                self._start_error = exc
                return
            finally:
                self._setup_scope = None  # nothing left to cancel: _stop_thread skips it
                self._to_host(self._started.set)
            if self._stopping:  # stopped before the inbox could be found: see _stopping
                return
            async for run in receive:
                if run is None:
                    return
                await self._execute(run)
                run = None  # a job's payload is not kept until the next job comes

    def _context(self, run: _Run) -> JobContext:
        # Made before the outcome is settled, never after: the job is still there.
        job = run.job
        assert job is not None
        return JobContext(
            payload=job.payload,
            job_id=job.id,
            executor_id=self.id,
            state=self._state_value,
            metadata=job.metadata,
            cancel_check=lambda: run.cancel_requested,
        )

    def _run_sync(self, run: _Run) -> None:
        """Runs a sync job right in the callback that brought it to the thread's loop:
        no task to wake, no second pass of the loop. Whatever the job raises is its own
        failure, BaseExceptions included: SystemExit, KeyboardInterrupt (never a signal's
        here: signals reach the main thread), GeneratorExit... would otherwise end the
        thread and leave the job without an outcome."""
        # No local keeps the job: once reported, the thread holds none of its payload.
        try:
            outcome = JobOutcome.success(
                run.job_id, self._entrypoint(run.context or self._context(run))
            )
        except BaseException as exc:  # the job's own: see the docstring
            error = RemoteError.from_exception(exc)
            outcome = JobOutcome.failure(run.job_id, FailureReason.RAISED, error)
        self._report(run, outcome)

    async def _execute(self, run: _Run) -> None:
        # No local keeps the job, as in _run_sync.
        outcome: JobOutcome
        try:
            with anyio.CancelScope() as scope:
                run.scope = scope
                if run.cancel_requested:
                    scope.cancel()
                value = await self._entrypoint(run.context or self._context(run))
            if scope.cancelled_caught:
                outcome = JobOutcome.failure(run.job_id, FailureReason.CANCELLED)
            else:
                outcome = JobOutcome.success(run.job_id, value)
        except anyio.get_cancelled_exc_class():
            raise  # the thread's loop is ending: not the job's (its scope takes its own)
        except BaseException as exc:  # the job's own, as in _run_sync
            error = RemoteError.from_exception(exc)
            outcome = JobOutcome.failure(run.job_id, FailureReason.RAISED, error)
        self._report(run, outcome)

    def _report(self, run: _Run, outcome: JobOutcome) -> None:
        outcomes = self._outcomes
        if outcomes is not None:
            outcomes.report(run, outcome)
        else:
            self._to_host(_settle, run, outcome)

    def _to_host(self, callback: Callable[..., object], *args: object) -> None:
        host = self._host_post
        assert host is not None
        _post_quietly(host, callback, *args)


def _settle(run: _Run, outcome: JobOutcome) -> None:
    # On the host's loop. The thread is done with the job: the run, which the thread may
    # hold a moment longer, lets go of its payload now. A run that kill() already ended
    # keeps that outcome.
    run.job = None
    if not run.done.is_set():
        run.outcome = outcome
        run.done.set()


def _send_nowait(inbox: MemoryObjectSendStream[_Run | None], item: _Run | None) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        inbox.send_nowait(item)


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 -- the method itself is inspected
    )


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


async def _call(function: Callable[[], object]) -> object:
    value = function()
    if inspect.isawaitable(value):
        value = await value
    return value


@attrs.define(eq=False)
class _Factory:
    entrypoint: Callable[..., Any]
    setup: Callable[[], object] | None
    options: ThreadOptions
    close_timeout: float
    outcomes: _Outcomes | None

    def create_executor(self, executor_id: str) -> ThreadExecutor:
        return ThreadExecutor(
            executor_id,
            self.entrypoint,
            self.setup,
            self.options.loop,
            _is_async(self.entrypoint),
            self.close_timeout,
            outcomes=self.outcomes,
        )


@attrs.frozen
class ThreadBackend:
    """Backend ``thread``: one thread per executor, each with its own event loop."""

    name: str = "thread"
    capabilities: Capabilities = _CAPABILITIES
    options: type = ThreadOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert isinstance(options, ThreadOptions)
        assert config.entrypoint is not None, "the pool checks the entrypoint before open()"
        entrypoint = resolve_callable(config.entrypoint, what="entrypoint")
        setup = resolve_callable(config.setup, what="setup") if config.setup else None
        outcomes = _Outcomes.on_this_loop()
        try:
            yield _Factory(entrypoint, setup, options, config.close_timeout, outcomes)
        finally:
            if outcomes is not None:
                outcomes.close()
