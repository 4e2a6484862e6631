from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def no_leaks() -> Iterator[None]:
    """Assert that the block leaves no child process (zombies included) and no live
    thread behind that it started. Use it around a test, or in an autouse fixture."""
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    yield
    children = [p for p in me.children(recursive=True) if p.pid not in children_before]
    threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and not _runtime_cache(t)
    ]
    assert not children, f"child processes left behind: {children}"
    assert not threads, f"threads left behind: {threads}"


def _runtime_cache(thread: threading.Thread) -> bool:
    # trio keeps idle worker threads in a cache (they exit after 10 s idle); they belong
    # to the event loop runtime, are daemons, and are reused by the next trio.run.
    return thread.daemon and thread.name.startswith("Trio thread")
