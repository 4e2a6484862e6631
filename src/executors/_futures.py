"""``PoolExecutor``: a :class:`concurrent.futures.Executor` over a pool of any backend,
for synchronous code. The pool lives on an event loop in one background thread; a call
costs no thread of its own, and one asyncio task from its acceptance to its outcome."""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import contextvars
import itertools
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import sniffio

from . import calls
from ._entrypoints import is_callable
from ._exceptions import ExecutorsError, PoolClosed
from ._handle import own_exception, result_of
from ._mapping import check_map_arguments, payloads, whole_number
from .backend import call

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from ._config import LoadedConfig, PoolConfig
    from ._handle import JobHandle, PoolStatistics
    from ._job import JobOutcome
    from ._pool import Pool

__all__ = ["PoolExecutor"]

logger = logging.getLogger("executors.futures")

#: the loops (and pools) of executors not shut down, held here so that an executor
#: dropped without shutdown() still has its pool closed at interpreter exit
_OPEN: set[_Host] = set()
_serial = itertools.count(1)
#: seconds the tasks of calls get to end once the pool is closed (they need one step)
CLOSE_WAIT = 5.0


class CallFuture(Future[Any]):
    """A :class:`concurrent.futures.Future` whose ``cancel()`` also stops a running job
    (the pool cancels it on its executor, killing where the backend can). It stays
    pending while its job runs, so that ``cancel()`` can take it; ``running()`` says
    whether the job runs."""

    def __init__(self) -> None:
        super().__init__()
        self._handle: JobHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._owner: PoolExecutor | None = None

    def running(self) -> bool:
        handle = self._handle
        return not self.done() and handle is not None and handle._started is not None

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        owner = self._owner
        if owner is not None:
            owner._cancel_job(self)
        return True


class PoolExecutor(concurrent.futures.Executor):
    """Runs calls on a pool of executors of any backend, behind the standard
    :class:`concurrent.futures.Executor` interface::

        with PoolExecutor(max_workers=4) as executor:
            print(executor.submit(pow, 2, 10).result())
            print(list(executor.map(str.upper, ["a", "b"])))

    The configuration comes from the usual sources (``pyproject.toml``,
    ``executors.toml``, ``EXECUTORS_*`` variables) unless ``config`` is given; keyword
    ``overrides`` (any :class:`PoolConfig` field, such as ``backend="thread"`` or
    ``job_timeout=30``) go on top. ``max_workers`` is ``max_executors``;
    ``initializer(*initargs)`` runs once in every executor as it starts (its setup);
    ``max_tasks_per_child`` is ``max_jobs_per_executor``. The pool starts
    ``min(max_workers, idle_executors)`` executors at once and more as calls come.

    Beyond the standard library: ``Future.cancel()`` stops a running call too; a crashed
    worker fails only its own future (the pool replaces it); ``submit_with(...,
    timeout=)`` bounds one call. Safe from many threads at once. At interpreter exit an
    executor not shut down is drained (``drain_timeout``) and closed; in a child made
    by ``os.fork()`` it refuses new calls instead of hanging.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        config: PoolConfig | LoadedConfig | None = None,
        name: str | None = None,
        **overrides: Any,
    ) -> None:
        settings: dict[str, Any] = dict(overrides)
        if max_workers is not None:
            whole_number("max_workers", max_workers)
            settings["max_executors"] = max_workers
        if max_tasks_per_child is not None:
            settings["max_jobs_per_executor"] = max_tasks_per_child
        if max_workers is not None and "idle_executors" not in overrides:
            # Fewer workers than the configured idle_executors: keep them all warm,
            # rather than refusing a setting the caller never gave.
            # (read with no upper bound: the configured one is the one replaced)
            unbounded = {**settings, "max_executors": sys.maxsize}
            idle = _load(config, unbounded).config.idle_executors
            settings["idle_executors"] = min(idle, max_workers)
        if initializer is not None:
            if not is_callable(initializer):
                msg = f"initializer must be callable, not {type(initializer).__name__}"
                raise TypeError(msg)
            settings["setup"] = _initializer_setup(initializer, initargs)
        loaded = _load(config, settings)
        if loaded.config.entrypoint is not None:
            msg = (
                f"a PoolExecutor runs plain calls: its pool takes no entrypoint (got "
                f"{loaded.config.entrypoint!r})"
            )
            raise ValueError(msg)
        self.name = name or f"executor{next(_serial)}"
        self._lock = threading.Lock()
        self._shutdown = False
        self._pid = os.getpid()
        # every future not yet done, to cancel at shutdown(cancel_futures=True)
        self._futures: set[CallFuture] = set()
        # the tasks that perform the launches of calls (see _accept), on the loop
        self._tasks: set[asyncio.Task[Any]] = set()
        self._host = _Host(self.name, loaded, self._tasks)
        self._pool: Pool = self._host.pool
        self._loop = self._host.loop
        # Calls reach the loop as callbacks, outside any task: they run in a context
        # that tells anyio (through sniffio) which loop it is on.
        self._context = contextvars.copy_context()
        self._context.run(sniffio.current_async_library_cvar.set, "asyncio")

    @property
    def pool(self) -> Pool:
        """The pool the calls run on (its statistics, its configuration). Use it from
        the executor's own loop only, e.g. through :meth:`statistics`."""
        return self._pool

    def statistics(self) -> PoolStatistics:
        """The pool's :class:`PoolStatistics`, read on its loop."""
        self._check_open()
        reading = asyncio.run_coroutine_threadsafe(call(self._pool.statistics), self._loop)
        statistics: PoolStatistics = reading.result()
        return statistics

    def wait_until(
        self, predicate: Callable[[PoolStatistics], bool], timeout: float | None = None
    ) -> PoolStatistics:
        """Block until ``predicate(statistics)`` holds (``executor.wait_until(lambda s:
        s.idle >= 4)`` waits for four warm workers); return that snapshot. Raises
        ``TimeoutError`` after ``timeout`` seconds."""
        self._check_open()
        waiting = asyncio.run_coroutine_threadsafe(self._pool.wait_until(predicate), self._loop)
        try:
            return waiting.result(timeout)
        except concurrent.futures.TimeoutError:
            waiting.cancel()
            raise

    # -- submitting ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; a future of its value. Raises
        ``RuntimeError`` after :meth:`shutdown`, as the standard executors do."""
        # Every keyword argument is fn's own, ``timeout`` included (see submit_with).
        return self._send(self._pool.call_payload(fn, args, kwargs), None, None)

    def submit_with(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        memory_limit_mb: float | None = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """:meth:`submit` with limits of this call's own: ``timeout`` (seconds; the call
        then ends TIMED_OUT) and ``memory_limit_mb`` (its executor is killed above it, or
        above the pool's limit if lower; the call ends MEMORY_LIMIT, on a backend that
        measures memory). The future then raises :class:`executors.JobFailed`. Keyword
        arguments of ``fn`` itself named ``timeout`` or ``memory_limit_mb`` go through
        :meth:`submit`."""
        payload = self._pool.call_payload(fn, args, kwargs)
        limit = None if memory_limit_mb is None else self._pool._checked_limit(memory_limit_mb)
        return self._send(payload, timeout, limit)

    def _send(
        self, payload: calls.Call, timeout: float | None, memory_limit_mb: float | None
    ) -> CallFuture:
        if os.getpid() != self._pid:
            # before the lock: a fork may have copied it held by the parent's loop thread
            self._check_open()
        future = CallFuture()
        future._owner = self
        with self._lock:
            self._check_open()
            self._futures.add(future)
            self._loop.call_soon_threadsafe(
                self._accept, future, payload, timeout, memory_limit_mb, context=self._context
            )
        return future

    def _check_open(self) -> None:
        if os.getpid() != self._pid:
            msg = (
                f"{self.name} was made in process {self._pid}, before os.fork(): its pool "
                "stayed there; make a new PoolExecutor in this process"
            )
            raise RuntimeError(msg)
        if self._shutdown:
            msg = "cannot schedule new futures after shutdown"
            raise RuntimeError(msg)

    # -- on the loop -----------------------------------------------------------------------

    def _accept(
        self,
        future: CallFuture,
        payload: calls.Call,
        timeout: float | None,
        memory_limit_mb: float | None,
    ) -> None:
        if future.cancelled():  # cancelled before the loop saw it
            self._forget(future)
            return
        pool = self._pool
        try:
            handle = pool._accept_served(payload, timeout, memory_limit_mb)
        except BaseException as exc:
            self._forget(future)
            if isinstance(exc, PoolClosed):
                exc = RuntimeError(f"cannot schedule new futures after shutdown ({exc})")
            _set(future, exc, failed=True)  # unless a cancel() came meanwhile
            return
        handle._on_done = lambda outcome: self._settle(future, outcome)
        # The job's launches run in a task of its own (a bare asyncio task: the pool's
        # task group would cost more than the rest of the launch), as run()'s run in
        # their caller's; cancelling it cancels the job, waiting or running.
        future._handle = handle
        future._task = task = self._loop.create_task(pool._serve(handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle(self, future: CallFuture, outcome: JobOutcome) -> None:
        self._forget(future)
        # The future may be held long after (by the caller, by a map's window): it keeps
        # its value, not the job's handle and task with the call's arguments.
        future._handle = future._task = None
        if future.cancelled():
            return
        own = own_exception(outcome)
        if own is not None:
            _set(future, own, failed=True)
            return
        try:
            value = result_of(outcome)
        except ExecutorsError as failed:
            _set(future, failed, failed=True)
        else:
            _set(future, value, failed=False)

    def _forget(self, future: CallFuture) -> None:
        with self._lock:
            self._futures.discard(future)

    def _cancel_job(self, future: CallFuture) -> None:
        """``future`` was cancelled from any thread: stop its job on the loop."""
        self._forget(future)
        if os.getpid() != self._pid:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
            self._loop.call_soon_threadsafe(self._cancel_on_loop, future, context=self._context)

    @staticmethod
    def _cancel_on_loop(future: CallFuture) -> None:
        # Through the pool first: a task cancelled before its first step never runs
        # _serve's cleanup, and the job would keep its executor.
        handle, task = future._handle, future._task
        if handle is not None and not handle.done():
            handle.cancel()
        if task is not None:
            task.cancel()

    # -- map -------------------------------------------------------------------------------

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn(*items)`` for the items of ``iterables`` taken together, in order.

        Unlike the standard library's, it reads ``iterables`` lazily: at most
        ``buffersize`` jobs (default: twice ``max_workers``) of ``chunksize`` items are
        unfinished at a time, so a generator of ten million items is never held whole.
        ``timeout`` counts from this call, as in the standard library. Leaving the loop
        early (or a failure) cancels the jobs left once the iterator is closed or
        collected."""
        check_map_arguments(chunksize, buffersize, "buffersize")
        if not iterables:
            msg = "map() needs at least one iterable"
            raise TypeError(msg)
        self._pool.call_payload(fn, (), {})  # the checks, before anything is read
        self._check_open()
        limit = buffersize or 2 * self._pool.config.max_executors
        deadline = None if timeout is None else time.monotonic() + timeout
        asynchronous = self._pool.config.entrypoint == calls.ASYNC_ENTRYPOINT
        jobs = payloads(fn, iterables, chunksize, asynchronous=asynchronous)
        window: collections.deque[CallFuture] = collections.deque()

        def send() -> None:
            while len(window) < limit:
                payload = next(jobs, None)
                if payload is None:
                    return
                window.append(self._send(payload, None, None))

        send()  # the first jobs go now, as the standard library's do
        results = _results(window, send, deadline, chunksize > 1)
        next(results)  # into its ``try``: closed or collected unread, it still cancels
        return results

    def asyncio_default(self) -> concurrent.futures.ThreadPoolExecutor:
        """This executor in the shape ``loop.set_default_executor()`` takes (a
        ``ThreadPoolExecutor``, which asyncio requires): its calls, ``asyncio.to_thread``
        and ``loop.run_in_executor(None, ...)`` then run on the pool. Shutting it down (as
        ``asyncio.run`` does at its end) shuts this executor down."""
        return _AsyncioDefault(self)

    # -- closing ---------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``cancel_futures``, cancel every call not finished
        (running ones included: they are stopped). With ``wait``, return once every
        call has ended and the pool is closed (running calls get ``drain_timeout``);
        without, the pool closes in the background."""
        with self._lock:
            if self._shutdown:
                first = False
            else:
                self._shutdown = first = True
            left = list(self._futures) if cancel_futures else []
        for future in left:
            future.cancel()
        if os.getpid() != self._pid:
            return  # the loop and the pool are the parent's
        if first:
            if wait:
                self._close()
            else:
                threading.Thread(
                    target=self._close, name=f"{self.name}-shutdown", daemon=True
                ).start()

    def _close(self) -> None:
        self._host.close()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "open"
        return f"<PoolExecutor {self.name} ({self._pool.backend.name}, {state})>"


class _AsyncioDefault(concurrent.futures.ThreadPoolExecutor):
    """See :meth:`PoolExecutor.asyncio_default`: a ThreadPoolExecutor that starts no
    thread, handing every call to its PoolExecutor."""

    def __init__(self, target: PoolExecutor) -> None:
        super().__init__(max_workers=1, thread_name_prefix=f"{target.name}-unused")
        self._target = target

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._target.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._target.shutdown(wait, cancel_futures=cancel_futures)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


class _Host:
    """The executor's event loop, in a daemon thread of its own (never joined at
    interpreter exit: the executor closes it first), and the pool open on it."""

    def __init__(self, name: str, loaded: LoadedConfig, tasks: set[asyncio.Task[Any]]) -> None:
        self.loop = asyncio.new_event_loop()
        self._tasks = tasks
        self._opened: Future[Pool] = Future()
        self._closing: asyncio.Event | None = None
        self._closed: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(name, loaded), name=f"{name}-loop", daemon=True
        )
        self._thread.start()
        self.pool = self._opened.result()  # the pool's errors (config, backend) raise here
        _OPEN.add(self)

    def _main(self, name: str, loaded: LoadedConfig) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve(name, loaded))
        except BaseException as exc:
            for future in (self._opened, self._closed):
                if not future.done():
                    future.set_exception(exc)
        else:
            self._closed.set_result(None)
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    async def _serve(self, name: str, loaded: LoadedConfig) -> None:
        from ._pool import open_pool  # the pool, its config and anyio: on first use

        self._closing = asyncio.Event()
        async with open_pool(loaded, name=name) as pool:
            self._opened.set_result(pool)
            await self._closing.wait()
        # Every job has its outcome once the pool is closed; their tasks end with a step.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT)
        # Whatever else still waits on this loop (a wait_until() from another thread)
        # ends now, cancelled, rather than never.
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=CLOSE_WAIT)

    def close(self) -> None:
        """Drain the pool (``drain_timeout``), close it and end the loop's thread."""
        closing = self._closing
        assert closing is not None
        with contextlib.suppress(RuntimeError):  # the loop ended already
            self.loop.call_soon_threadsafe(closing.set)
        if threading.current_thread() is self._thread:
            # From the loop itself (a done callback calling shutdown()): the close goes
            # on once this callback returns; waiting for it here would never end.
            return
        try:
            self._closed.result()
        finally:
            self._thread.join()
            _OPEN.discard(self)


def _set(future: CallFuture, value: Any, *, failed: bool) -> None:
    # A future cancelled meanwhile from another thread keeps its cancellation.
    try:
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


def _results(
    window: collections.deque[CallFuture],
    send: Callable[[], None],
    deadline: float | None,
    chunked: bool,
) -> Iterator[Any]:
    try:
        yield None  # taken by map() itself
        while window:
            future = window[0]
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            value = future.result(wait)
            window.popleft()
            send()
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for future in window:
            future.cancel()


def _initializer_setup(initializer: Callable[..., object], initargs: tuple[Any, ...]) -> Any:
    """The pool's setup for ``initializer(*initargs)``."""
    import functools

    if not initargs:
        return initializer
    return functools.partial(initializer, *initargs)


def _load(config: PoolConfig | LoadedConfig | None, settings: Mapping[str, Any]) -> LoadedConfig:
    from ._config import LoadedConfig, PoolConfig, load_config

    if config is None:
        return load_config(settings)
    if isinstance(config, PoolConfig):
        return LoadedConfig.of(config.evolve(**settings) if settings else config)
    if settings:
        return LoadedConfig.of(config.config.evolve(**settings))
    return config


def _close_at_exit() -> None:
    # Executors not shut down, and those whose shutdown(wait=False) still runs in a
    # daemon thread that the interpreter would not wait for.
    for host in list(_OPEN):
        try:
            host.close()
        except Exception:  # the next pools, and the interpreter's other hooks, go on
            logger.exception("closing the pool of a PoolExecutor at exit failed")


# Where the standard library's executors close theirs: before the interpreter joins its
# threads and runs atexit handlers (multiprocessing's among them), while every part of
# the pool still works. atexit where that hook does not exist.
_register_atexit = getattr(threading, "_register_atexit", atexit.register)
_register_atexit(_close_at_exit)


def _after_fork_in_child() -> None:
    # Nothing of the parent's loop thread came along: every executor refuses new calls
    # (see _check_open) and its futures are the parent's.
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
