"""Deadlines the checker keeps, whatever the backend under test does.

Every rule runs its async code on an event loop of its own, in a daemon thread
(:class:`LoopThread`), and the checker's thread waits for it with a deadline. The
backend under test is wrapped (:class:`WatchedBackend`), so every call into it is logged
while it runs. When the code overruns its deadline it is cancelled; if it has still not
returned after a grace, the loop is abandoned (its daemon thread sleeps on, holding what
the backend would not let go) and the rule fails, naming the backend calls that never
returned. The checker then goes on with the next rule.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import attrs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator

    from ..._config import PoolConfig
    from ..._executor import (
        Backend,
        Capabilities,
        ExecutorFactory,
        ExecutorState,
        Health,
        JobExecutor,
    )
    from ..._job import Job, JobOutcome

T = TypeVar("T")

#: seconds a call the checker cancelled has to return before its loop is abandoned
GRACE = 2.0
#: seconds between two looks at the calls running while the checker waits
_LOOK = 0.05
#: every loop abandoned in this process (their daemon threads sleep on)
_abandoned: list[LoopThread] = []


def abandoned_loops() -> list[LoopThread]:
    """The loops this process abandoned to a backend that would not return."""
    return list(_abandoned)


def abandoned_threads() -> set[threading.Thread]:
    """The threads of those loops: left behind on purpose, once their rule failed."""
    return {loop._thread for loop in _abandoned if loop._thread is not None}


class Overran(AssertionError):
    """Raised in the checker's thread when code on a :class:`LoopThread` overran its
    deadline; the message says what did not finish and which backend calls were still
    running."""


# -- the log of calls into the backend ---------------------------------------------------------


@attrs.define
class Call:
    """One call into an executor (or its factory) while it runs, and how it ended."""

    number: int
    executor_id: str
    #: ``start()``, ``run_job(<job id>)``, ``aclose()``, ``kill()``, ``wait_exited()``...
    method: str
    started: float
    #: the caller's deadline when it called (``math.inf``: none), in ``time.monotonic()``
    deadline: float = math.inf
    ended: float | None = None
    #: ``returned``, ``cancelled`` or ``raised <type>``
    how: str = ""
    #: the executor's state when the call ended
    state_after: ExecutorState | None = None

    def describe(self, now: float) -> str:
        text = f"{self.method} of {self.executor_id}"
        if self.ended is not None:
            return f"{text} {self.how}"
        text += f", called {now - self.started:.1f}s ago, has not returned"
        if self.deadline < now:
            text += f" ({now - self.deadline:.1f}s after its caller's deadline cancelled it)"
        return text


@attrs.define(eq=False)
class CallLog:
    """Every call made into the watched executors of one rule, in order. Read from the
    checker's thread while the loop runs: appends and updates are atomic."""

    calls: list[Call] = attrs.field(factory=list)
    _numbers: Iterator[int] = attrs.field(factory=itertools.count)

    def cancel_all(self) -> None:
        """Every call still running was cancelled now (the rule failed around it)."""
        now = time.monotonic()
        for call in self.running():
            call.deadline = min(call.deadline, now)

    def running(self) -> list[Call]:
        return [call for call in list(self.calls) if call.ended is None]

    def of(self, executor_id: str) -> list[Call]:
        return [call for call in list(self.calls) if call.executor_id == executor_id]

    def cancelled(self, method: str) -> None:
        """The caller of ``method`` (still running) cancelled it now: it counts as past
        its deadline from here on."""
        now = time.monotonic()
        for call in self.running():
            if call.method == method:
                call.deadline = min(call.deadline, now)

    def describe_running(self) -> str:
        now = time.monotonic()
        running = self.running()
        if not running:
            return "no call into the backend was running"
        return "; ".join(call.describe(now) for call in running)

    @contextlib.contextmanager
    def call(self, executor: JobExecutor | None, executor_id: str, method: str) -> Iterator[Call]:
        deadline = anyio.current_effective_deadline()
        # anyio's deadline is in the loop's clock; the log's times are monotonic
        if deadline != math.inf:
            deadline = time.monotonic() + (deadline - anyio.current_time())
        record = Call(next(self._numbers), executor_id, method, time.monotonic(), deadline)
        self.calls.append(record)
        try:
            yield record
        except anyio.get_cancelled_exc_class():
            record.how = "cancelled"
            raise
        except BaseException as exc:
            record.how = f"raised {type(exc).__name__}"
            raise
        else:
            record.how = "returned"
        finally:
            record.ended = time.monotonic()
            if executor is not None:
                with contextlib.suppress(Exception):
                    record.state_after = executor.state


# -- the watched backend -----------------------------------------------------------------------


@attrs.define(eq=False)
class WatchedExecutor:
    """Delegates to the backend's executor, logging each call."""

    inner: JobExecutor
    log: CallLog

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def state(self) -> ExecutorState:
        return self.inner.state

    async def start(self) -> None:
        with self.log.call(self.inner, self.inner.id, "start()"):
            await self.inner.start()

    async def run_job(self, job: Job) -> JobOutcome:
        with self.log.call(self.inner, self.inner.id, f"run_job({job.id})"):
            return await self.inner.run_job(job)

    async def aclose(self) -> None:
        with self.log.call(self.inner, self.inner.id, "aclose()"):
            await self.inner.aclose()

    async def kill(self) -> None:
        with self.log.call(self.inner, self.inner.id, "kill()"):
            await self.inner.kill()

    def health(self) -> Health:
        with self.log.call(None, self.inner.id, "health()"):
            return self.inner.health()


@attrs.define(eq=False)
class WatchedExitingExecutor(WatchedExecutor):
    """A watched executor whose backend provides ``wait_exited()``."""

    async def wait_exited(self) -> None:
        with self.log.call(None, self.inner.id, "wait_exited()"):
            await self.inner.wait_exited()  # type: ignore[attr-defined]


@attrs.define(eq=False)
class WatchedFactory:
    inner: ExecutorFactory
    log: CallLog
    #: every executor made, by id
    made: dict[str, WatchedExecutor] = attrs.field(factory=dict)

    def create_executor(self, executor_id: str) -> JobExecutor:
        with self.log.call(None, executor_id, "create_executor()"):
            inner = self.inner.create_executor(executor_id)
        kind = WatchedExitingExecutor if hasattr(inner, "wait_exited") else WatchedExecutor
        watched = kind(inner, self.log)
        self.made[executor_id] = watched
        return watched


@attrs.define(eq=False)
class WatchedBackend:
    """The backend under test, its executors wrapped to log every call."""

    inner: Backend
    log: CallLog = attrs.field(factory=CallLog)
    factories: list[WatchedFactory] = attrs.field(factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def options(self) -> type:
        return self.inner.options

    @contextlib.asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        with self.log.call(None, "-", "open()"):
            manager = self.inner.open(config, options)
            factory = await manager.__aenter__()
        watched = WatchedFactory(factory, self.log)
        self.factories.append(watched)
        try:
            yield watched
        except BaseException as exc:
            with self.log.call(None, "-", "open() exit"):
                if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
        else:
            with self.log.call(None, "-", "open() exit"):
                await manager.__aexit__(None, None, None)

    def executors(self) -> dict[str, WatchedExecutor]:
        return {k: v for factory in self.factories for k, v in factory.made.items()}


# -- the loop in a thread ----------------------------------------------------------------------


@attrs.define(eq=False)
class LoopThread:
    """An event loop (``host``: asyncio or trio) in a daemon thread, for the checker's
    thread to run code on with deadlines. Use it as a context manager."""

    host: str
    #: what the log says when code overruns
    log: CallLog | None = None
    #: seconds a cancelled call into the backend has to return
    grace: float = GRACE
    abandoned: bool = attrs.field(init=False, default=False)
    _portal: anyio.from_thread.BlockingPortal | None = attrs.field(init=False, default=None)
    _thread: threading.Thread | None = attrs.field(init=False, default=None)
    _ready: threading.Event = attrs.field(init=False, factory=threading.Event)
    _error: BaseException | None = attrs.field(init=False, default=None)
    _token: anyio.lowlevel.EventLoopToken | None = attrs.field(init=False, default=None)
    _spare: anyio.abc.TaskGroup | None = attrs.field(init=False, default=None)

    def __enter__(self) -> LoopThread:
        self._thread = threading.Thread(
            target=self._main, name=f"executors-check-{self.host}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(30.0) or self._portal is None:
            msg = f"the checker's {self.host} event loop did not start: {self._error!r}"
            raise Overran(msg)
        return self

    def __exit__(self, *exc_info: object) -> None:
        portal, thread = self._portal, self._thread
        if self.abandoned or portal is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            portal.start_task_soon(portal.stop, True)
        thread.join(self.grace + 5.0)
        if thread.is_alive():
            self._abandon()

    def _abandon(self) -> None:
        """Give the loop up: the checker calls nothing more on it, and its daemon thread
        sleeps on (until :meth:`release`, or the process exits)."""
        self.abandoned = True
        _abandoned.append(self)

    def release(self, *calls: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``calls`` on an abandoned loop (kills, to end what held it), then tell it
        to stop once they return; wait for it with :meth:`join`. They run in a task
        group of their own: the portal may be stopping already, cancelling its tasks."""
        token, spare = self._token, self._spare
        if token is None or spare is None:
            return

        def start() -> None:
            for call in calls:
                spare.start_soon(call)
            if self._portal is not None:
                spare.start_soon(self._portal.stop, True)

        def schedule() -> None:
            with contextlib.suppress(Exception):  # the loop may have ended meanwhile
                anyio.from_thread.run_sync(start, token=token)

        # From a thread of its own: a loop blocked for good would block the caller.
        helper = threading.Thread(target=schedule, daemon=True)
        helper.start()
        helper.join(self.grace)

    def join(self, timeout: float) -> bool:
        """Wait for the loop's thread to end (an abandoned loop ends once what held it
        returns); whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _main(self) -> None:
        async def serve() -> None:
            # The spare task group outlives the portal: what release() starts in it
            # is not cancelled with the portal's tasks.
            async with anyio.create_task_group() as spare:
                self._spare = spare
                self._token = anyio.lowlevel.current_token()
                async with anyio.from_thread.BlockingPortal() as portal:
                    self._portal = portal
                    self._ready.set()
                    await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend=self.host)
        except BaseException as exc:  # reported by __enter__, or lost with the loop
            self._error = exc
            self._ready.set()

    @property
    def portal(self) -> anyio.from_thread.BlockingPortal:
        assert self._portal is not None, "the loop is not running"
        return self._portal

    def call(
        self, function: Callable[..., Awaitable[T]], *args: Any, within: float, what: str
    ) -> T:
        """Run ``function(*args)`` on the loop and return what it returns; raise
        :class:`Overran` if it does not finish within ``within`` seconds, or as soon as
        a call into the backend has ignored its caller's deadline for :attr:`grace`
        seconds (it was cancelled then, and has not returned)."""
        if self.abandoned:
            msg = f"{what}: not run, the checker's loop was abandoned by an earlier step"
            raise Overran(msg)
        # Set when the task ends, whatever ends it: a cancelled future is done at once,
        # while its task may still be held by the backend.
        ended = threading.Event()

        async def task() -> T:
            try:
                return await function(*args)
            finally:
                ended.set()

        try:
            future = self.portal.start_task_soon(task)
        except RuntimeError as exc:  # the portal has stopped: what ended the loop says why
            msg = f"{what}: the checker's event loop has ended: {self._error or exc!r}"
            raise Overran(msg) from self._error
        give_up = time.monotonic() + within
        while True:
            try:
                return future.result(timeout=max(0.0, min(_LOOK, give_up - time.monotonic())))
            except concurrent.futures.TimeoutError:
                pass
            except Exception:
                raise
            except BaseException as exc:
                # SystemExit, GeneratorExit... let through by the backend into the loop:
                # never into the checker's thread, which it would end.
                msg = (
                    f"{what}: {type(exc).__name__} raised in the event loop "
                    f"({exc!r}), out of the backend or the pool: it must not escape"
                )
                raise Overran(msg) from None
            ignoring = self._ignoring_cancellation()
            if ignoring or time.monotonic() >= give_up:
                break
        now = time.monotonic()
        running = self.log.describe_running() if self.log is not None else ""
        future.cancel()
        # A call that ignored its cancellation for the whole grace already gets no more.
        ended.wait(_LOOK if ignoring else self.grace)
        if ended.is_set() and not ignoring:
            msg = f"{what} did not finish within {within:.1f}s" + (
                f": {running}" if running else ""
            )
            raise Overran(msg)
        if not ended.is_set():
            self._abandon()
        if ignoring:
            msg = (
                f"{what}: {ignoring.describe(now)}: a call must return once cancelled, "
                f"within {self.grace:.1f}s"
            )
        else:
            msg = (
                f"{what} did not finish within {within:.1f}s, and did not return within "
                f"{self.grace:.1f}s of being cancelled: {running}"
            )
        raise Overran(msg)

    def _ignoring_cancellation(self) -> Call | None:
        """A call into the backend still running :attr:`grace` seconds past the deadline
        its caller set (which cancelled it)."""
        if self.log is None:
            return None
        now = time.monotonic()
        for call in self.log.running():
            if call.deadline + self.grace < now:
                return call
        return None


def run_within(
    host: str,
    function: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    log: CallLog | None = None,
    grace: float = GRACE,
) -> T:
    """Run ``function()`` on a fresh ``host`` loop of its own, within ``within`` seconds."""
    with LoopThread(host, log, grace) as loop:
        return loop.call(function, within=within, what=what)
