"""Entrypoints and setups that docs/thread.md refers to as ``"examples.thread_jobs:<name>"``.
They run in the executor threads of the host process."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING

import anyio
import attrs
import sniffio

if TYPE_CHECKING:
    from executors import JobContext


def digest(ctx: JobContext) -> str:
    """SHA-256 of ``payload`` bytes: hashlib releases the GIL while it hashes large data,
    so several threads hash at once."""
    return hashlib.sha256(ctx.payload).hexdigest()


@attrs.define(eq=False)
class Client:
    """Stands for a client that must not be shared between threads (a database
    connection, an HTTP session): it remembers the thread that made it."""

    made_in: str = attrs.field(factory=lambda: threading.current_thread().name)

    def get(self, key: str) -> str:
        if threading.current_thread().name != self.made_in:
            raise RuntimeError("this client belongs to another thread")
        time.sleep(0.01)  # blocking I/O: the thread waits, the host's event loop does not
        return f"value of {key}"


def make_client() -> Client:
    """A setup: runs once in each executor thread."""
    return Client()


def lookup(ctx: JobContext) -> str:
    """A blocking call through the client of this thread."""
    client: Client = ctx.state
    return client.get(ctx.payload)


def count_slowly(ctx: JobContext) -> int:
    """Long sync work in small steps, stopping early once the pool asks."""
    done = 0
    for _ in range(int(ctx.payload)):
        if ctx.cancel_requested:
            break
        time.sleep(0.001)  # one step of the work
        done += 1
    return done


def stubborn(ctx: JobContext) -> str:
    """Waits for the ``threading.Event`` in its payload (if any), whatever the pool asks:
    it never looks at ``ctx.cancel_requested``."""
    if ctx.payload is not None:
        ctx.payload.wait()
    return "finished"


async def which_loop(ctx: JobContext) -> str:
    """An async entrypoint: it runs on the event loop of its executor thread."""
    await anyio.sleep(0.001)
    return sniffio.current_async_library()
