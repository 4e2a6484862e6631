from __future__ import annotations

import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psutil

from .._helpers import helper_processes

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: seconds a thread that is ending when the block exits gets to end (asyncio's
#: ``asyncio-waitpid`` watcher, for one, outlives the reaping of its child by a moment)
_THREAD_GRACE = 2.0


@contextmanager
def no_leaks() -> Iterator[None]:
    """Assert that the block leaves behind nothing it started: no child process (zombies
    included), no live thread, no open file descriptor. Use it around a test, or in an
    autouse fixture.

    The interpreter-wide helpers (``multiprocessing``'s forkserver and resource tracker,
    the processes a backend declared with ``executors.backend.register_helper_process``,
    and the descriptors that reach them) are not counted: they live as long as the
    interpreter and serve every pool.
    """
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    helpers = interpreter_helpers()
    children = [
        p
        for p in me.children(recursive=True)
        if p.pid not in children_before and p.pid not in helpers.pids
    ]
    threads = _threads_still_running(
        t
        for t in threading.enumerate()
        if t not in threads_before and not _runtime_cache(t) and t not in _abandoned()
    )
    fds = sorted(_open_fds() - fds_before - helpers.fds)
    assert not children, f"child processes left behind: {children}"
    assert not threads, f"threads left behind: {threads}"
    assert not fds, f"file descriptors left open: {fds}"


def _threads_still_running(threads: Iterable[threading.Thread]) -> list[threading.Thread]:
    """The threads of ``threads`` still alive once each was joined until a shared deadline:
    a thread that is ending is not a leak; one that runs on is."""
    deadline = time.monotonic() + _THREAD_GRACE
    left = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread)
    return left


class _Helpers:
    def __init__(self, pids: set[int], fds: set[int]) -> None:
        self.pids, self.fds = pids, fds


def interpreter_helpers() -> _Helpers:
    """The processes that serve every pool of this interpreter, and the descriptors that
    reach them: ``multiprocessing``'s forkserver and resource tracker, and the helpers
    backends declared (``executors.backend.register_helper_process``)."""
    server = multiprocessing.forkserver._forkserver
    tracker = multiprocessing.resource_tracker._resource_tracker
    pids = {getattr(server, "_forkserver_pid", None), getattr(tracker, "_pid", None)}
    fds = {getattr(server, "_forkserver_alive_fd", None), getattr(tracker, "_fd", None)}
    declared_pids, declared_fds = helper_processes()
    return _Helpers(
        {p for p in pids if p is not None} | declared_pids,
        {f for f in fds if f is not None} | declared_fds,
    )


def _open_fds() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except FileNotFoundError:  # no procfs: descriptors are not checked
        return set()


def _abandoned() -> set[threading.Thread]:
    """The event loops the conformance checker gave up on, once a rule failed because a
    backend would not return: they are left behind on purpose, and reported."""
    if "executors.testing.conformance._guard" not in sys.modules:
        return set()
    from .conformance._guard import abandoned_threads

    return abandoned_threads()


def _runtime_cache(thread: threading.Thread) -> bool:
    # trio keeps idle worker threads in a cache (they exit after 10 s idle); they belong
    # to the event loop runtime, are daemons, and are reused by the next trio.run.
    return thread.daemon and thread.name.startswith("Trio thread")
