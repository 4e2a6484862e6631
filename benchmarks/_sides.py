"""The sides the harness (``bench.py``) measures: our three backends and the anchors a
user would pick instead. Each side is opened as an async context manager that yields a
:class:`Side`: one call of a no-op job (``await side.call(i)`` returns ``i``) and, for
process pools, the pids of its workers.

The script imports this by name (``from _sides import ...``): run as ``python
benchmarks/bench.py``, its own directory is on ``sys.path``. Anchors whose package is not
installed are reported as missing, never as a failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import queue
import socket
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_process
import anyio.to_thread
import attrs
import psutil
from bench_jobs import identity, meet

from executors import PoolConfig, open_pool
from executors.testing._leaks import interpreter_helpers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from multiprocessing.context import ForkServerContext

    from _report import Call

    from executors import Pool

#: the anchors' forkserver preloads what their workers import as they start (their own
#: worker modules, the jobs' module), as our fork server preloads ours: each side is
#: timed at its best, and no side's start depends on what another side imports
PRELOAD = ["bench_jobs", "concurrent.futures.process"]
if importlib.util.find_spec("pebble") is not None:
    PRELOAD.append("pebble.pool.process")


@attrs.define
class Side:
    name: str
    call: Call
    #: the pool, for our sides (recovery waits on its statistics)
    pool: Pool | None = None
    #: False for a side that serves one call at a time (the floors)
    concurrent: bool = True


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def forkserver() -> ForkServerContext:
    """The forkserver, started once with the modules our workers preload, and shared by
    every forkserver side: nobody is charged with its start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context


def our_fork_server() -> None:
    """The process backend's own fork server (Linux), started by a pool of one worker
    opened and closed, with the modules our workers preload: nobody is charged with its
    start either."""

    async def start() -> None:
        async with open_pool(pool_config("process", 1)) as pool:
            await pool.wait_until(lambda s: s.idle >= 1)

    anyio.run(start)


def helper_pids() -> set[int]:
    """multiprocessing's and loky's interpreter-wide helper processes (not workers).
    The forkserver is known by its pid: the workers it forks share its command line."""
    pids = set(interpreter_helpers().pids)
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" in " ".join(child.cmdline()):
                pids.add(child.pid)
    return pids


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)} - helper_pids()


def _wrap(submit: Callable[[int], Future[Any]]) -> Call:
    async def call(i: int) -> object:
        return await asyncio.wrap_future(submit(i))

    return call


# -- ours -------------------------------------------------------------------------------


def pool_config(backend: str, executors: int, **more: Any) -> PoolConfig:
    entrypoint = "bench_jobs:anoop" if backend == "coroutine" else "bench_jobs:noop"
    options: dict[str, Any] = {}
    if backend == "process":
        options["start_method"] = "forkserver"
    if backend == "coroutine":
        options["loop_lag_warn"] = None
    settings: dict[str, Any] = {
        "backend": backend,
        "entrypoint": entrypoint,
        "idle_executors": executors,
        "max_executors": executors,
        # every side starts its workers at once
        "max_concurrent_initializations": executors,
        "max_pending": None,
        "backend_options": options,
    }
    settings.update(more)
    return PoolConfig(**settings)


@contextlib.asynccontextmanager
async def ours(backend: str, executors: int) -> AsyncIterator[Side]:
    async with open_pool(pool_config(backend, executors)) as pool:
        await pool.wait_until(lambda s: s.idle >= executors)
        yield Side(f"{backend} pool", pool.run, pool)


# -- process anchors (asyncio host) ------------------------------------------------------


@contextlib.asynccontextmanager
async def ppe(context: ForkServerContext, workers: int) -> AsyncIterator[Side]:
    with ProcessPoolExecutor(workers, mp_context=context) as executor:
        yield Side("ProcessPoolExecutor", _wrap(lambda i: executor.submit(identity, i)))


@contextlib.asynccontextmanager
async def ppe_started(context: ForkServerContext, workers: int) -> AsyncIterator[Side]:
    """ProcessPoolExecutor whose calls each wait for ``workers`` workers to have come
    (bench_jobs.meet): ``workers`` calls made at once start ``workers`` processes."""
    with (
        tempfile.TemporaryDirectory() as directory,
        ProcessPoolExecutor(workers, mp_context=context) as executor,
    ):
        yield Side(
            f"ProcessPoolExecutor, {workers} started",
            _wrap(lambda i: executor.submit(meet, (directory, workers, i))),
        )


@contextlib.asynccontextmanager
async def loky_executor(workers: int) -> AsyncIterator[Side]:
    import loky  # type: ignore[import-untyped]

    executor = loky.ProcessPoolExecutor(max_workers=workers)
    try:
        yield Side("loky", _wrap(lambda i: executor.submit(identity, i)))
    finally:
        executor.shutdown(wait=True, kill_workers=True)


@contextlib.asynccontextmanager
async def pebble_pool(context: ForkServerContext, workers: int) -> AsyncIterator[Side]:
    import pebble

    pool = pebble.ProcessPool(max_workers=workers, context=context)
    try:
        yield Side("pebble", _wrap(lambda i: pool.schedule(identity, args=(i,))))
    finally:
        pool.close()  # type: ignore[no-untyped-call]
        await anyio.to_thread.run_sync(pool.join)


def _limited(name: str, run_sync: Callable[..., Any], limiter: object) -> Side:
    """A side that calls ``run_sync(identity, i, limiter=limiter)``: anyio's and trio's
    ``to_thread`` / ``to_process``, with a capacity limiter of the workers' number."""

    async def call(i: int) -> object:
        return await run_sync(identity, i, limiter=limiter)

    return Side(name, call)


@contextlib.asynccontextmanager
async def to_process(workers: int) -> AsyncIterator[Side]:
    yield _limited("anyio.to_process", anyio.to_process.run_sync, anyio.CapacityLimiter(workers))


def _echo(sock: socket.socket) -> None:
    """The floor's other process: reads a pickled message and sends it back."""
    while data := sock.recv(1 << 16):
        sock.sendall(pickle.dumps(pickle.loads(data)))


@contextlib.asynccontextmanager
async def socketpair_floor(context: ForkServerContext) -> AsyncIterator[Side]:
    """A raw round trip between two processes: the floor for any process backend."""
    ours_end, theirs = socket.socketpair()
    process = context.Process(target=_echo, args=(theirs,))
    process.start()
    theirs.close()
    ours_end.setblocking(False)
    loop = asyncio.get_running_loop()

    async def call(i: int) -> object:
        await loop.sock_sendall(ours_end, pickle.dumps(i))
        return pickle.loads(await loop.sock_recv(ours_end, 1 << 16))

    try:
        yield Side("socketpair floor", call, concurrent=False)
    finally:
        ours_end.close()
        process.join()


# -- thread anchors (asyncio host) -------------------------------------------------------


@contextlib.asynccontextmanager
async def tpe(workers: int) -> AsyncIterator[Side]:
    with ThreadPoolExecutor(workers) as executor:
        yield Side("ThreadPoolExecutor", _wrap(lambda i: executor.submit(identity, i)))


@contextlib.asynccontextmanager
async def to_thread(workers: int) -> AsyncIterator[Side]:
    yield _limited("anyio.to_thread", anyio.to_thread.run_sync, anyio.CapacityLimiter(workers))


Answer = tuple["asyncio.Future[object]", object]


def _answer(
    jobs: queue.SimpleQueue[tuple[asyncio.Future[object], int] | None],
    answers: collections.deque[Answer],
    wake: int | None,
) -> None:
    """The thread floor's thread: answers each call, and nothing else. With an eventfd
    (``wake``), it queues the answer and writes the eventfd the host's loop watches;
    without, it goes through the loop's ``call_soon_threadsafe``."""
    while (item := jobs.get()) is not None:
        future, i = item
        if wake is None:
            future.get_loop().call_soon_threadsafe(future.set_result, identity(i))
        else:
            answers.append((future, identity(i)))
            os.eventfd_write(wake, 1)


@contextlib.asynccontextmanager
async def thread_floor() -> AsyncIterator[Side]:
    """One thread that takes calls from a queue and answers with the quickest wake-up of
    an asyncio loop from a thread this machine has: an eventfd the loop watches (Linux),
    else the loop's ``call_soon_threadsafe``. A hand-off to a thread and back with no
    framework at all, the floor for any thread backend on an asyncio host."""
    jobs: queue.SimpleQueue[tuple[asyncio.Future[object], int] | None] = queue.SimpleQueue()
    answers: collections.deque[Answer] = collections.deque()
    loop = asyncio.get_running_loop()
    wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if hasattr(os, "eventfd") else None

    def settle() -> None:
        assert wake is not None
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(wake)
        while answers:
            future, value = answers.popleft()
            future.set_result(value)

    if wake is not None:
        loop.add_reader(wake, settle)
    thread = threading.Thread(target=_answer, args=(jobs, answers, wake), name="thread floor")
    thread.start()

    async def call(i: int) -> object:
        future = loop.create_future()
        jobs.put((future, i))
        return await future

    try:
        yield Side("thread floor", call, concurrent=False)
    finally:
        jobs.put(None)
        thread.join()
        if wake is not None:
            loop.remove_reader(wake)
            os.close(wake)


# -- thread anchors (trio host) ------------------------------------------------------------


@contextlib.asynccontextmanager
async def trio_to_thread(workers: int) -> AsyncIterator[Side]:
    """What a trio program calls for a thread: ``trio.to_thread.run_sync``."""
    import trio

    yield _limited("trio.to_thread", trio.to_thread.run_sync, trio.CapacityLimiter(workers))


def _answer_trio(jobs: queue.SimpleQueue[tuple[Any, int] | None], token: Any) -> None:
    """The trio thread floor's thread: reschedules the calling task with each answer."""
    import outcome
    import trio

    while (item := jobs.get()) is not None:
        task, i = item
        token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.Value(identity(i)))


@contextlib.asynccontextmanager
async def trio_thread_floor() -> AsyncIterator[Side]:
    """One thread that takes calls from a queue and wakes the calling task through
    trio's ``run_sync_soon`` (as ``trio.to_thread`` does, with nothing else): the floor
    for any thread backend on a trio host."""
    import trio

    jobs: queue.SimpleQueue[tuple[Any, int] | None] = queue.SimpleQueue()
    token = trio.lowlevel.current_trio_token()
    thread = threading.Thread(target=_answer_trio, args=(jobs, token), name="trio floor")
    thread.start()

    def no_abort(_: object) -> Any:
        return trio.lowlevel.Abort.FAILED

    async def call(i: int) -> object:
        jobs.put((trio.lowlevel.current_task(), i))
        return await trio.lowlevel.wait_task_rescheduled(no_abort)

    try:
        yield Side("thread floor", call, concurrent=False)
    finally:
        jobs.put(None)
        thread.join()


# -- task anchors ----------------------------------------------------------------------------


async def _noop(i: int) -> int:
    await anyio.lowlevel.checkpoint()
    return i


@contextlib.asynccontextmanager
async def asyncio_task() -> AsyncIterator[Side]:
    async def call(i: int) -> object:
        return await asyncio.create_task(_noop(i))

    yield Side("asyncio.create_task", call)


@contextlib.asynccontextmanager
async def trio_task() -> AsyncIterator[Side]:
    import trio

    async with trio.open_nursery() as nursery:

        async def call(i: int) -> object:
            done = trio.Event()
            box: list[int] = []

            async def task() -> None:
                box.append(await _noop(i))
                done.set()

            nursery.start_soon(task)
            await done.wait()
            return box[0]

        yield Side("trio task", call)


@contextlib.asynccontextmanager
async def trio_parallel_side(workers: int) -> AsyncIterator[Side]:
    import trio
    import trio_parallel  # type: ignore[import-untyped]

    limiter = trio.CapacityLimiter(workers)
    # forkserver workers, as our pool's
    worker_type = trio_parallel.WorkerType.FORKSERVER
    async with trio_parallel.open_worker_context(worker_type=worker_type) as context:

        async def call(i: int) -> object:
            return await context.run_sync(identity, i, limiter=limiter)

        yield Side("trio-parallel", call)
