"""Entrypoints, setups and payloads for the thread backend tests.

Jobs that must wait for the test wait on a :class:`Probe` carried in their payload (a
job runs in the test's own process): the test learns when the job started and which
thread runs it, and releases the job when it chooses, so nothing sleeps and hopes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs
import sniffio
from thread_helpers import PATIENCE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from executors import JobContext

#: how often a polling job looks at ``ctx.cancel_requested``
POLL = 0.001


@attrs.define(eq=False)
class Probe:
    """Shared by a test and one job: the job reports in, the test lets it go."""

    started: threading.Event = attrs.field(factory=threading.Event)
    release: threading.Event = attrs.field(factory=threading.Event)
    #: the thread that runs the job, once it started
    thread: threading.Thread | None = None

    def enter(self) -> None:
        self.thread = threading.current_thread()
        self.started.set()


# -- setups -------------------------------------------------------------------------------

#: the thread of every setup call, in call order
SETUP_THREADS: list[str] = []


def per_thread_setup() -> dict[str, str]:
    name = threading.current_thread().name
    SETUP_THREADS.append(name)
    return {"loaded_in": name}


class SetupFailed(Exception):
    pass


def broken_setup() -> None:
    raise SetupFailed("model weights not found")


async def broken_async_setup() -> None:
    await anyio.lowlevel.checkpoint()
    raise SetupFailed("async model weights not found")


#: what failing_setup_with_a_held_teardown holds, and the test that holds it lets go:
#: a test sets a fresh Probe here first
TEARDOWN = Probe()
#: keeps that setup's async generator alive until its loop closes
_HELD: list[object] = []


async def failing_setup_with_a_held_teardown() -> None:
    """Fails, leaving an async generator suspended: the thread's loop finalizes it as it
    closes, after the thread reported the failed start, and that waits for
    ``TEARDOWN.release``."""

    async def held() -> AsyncIterator[None]:
        try:
            yield
        finally:
            _HELD.clear()
            TEARDOWN.enter()
            TEARDOWN.release.wait(PATIENCE)

    generator = held()
    await generator.__anext__()
    _HELD.append(generator)
    raise SetupFailed("model weights not found, and a teardown is held")


# -- sync entrypoints ---------------------------------------------------------------------


def thread_name(ctx: JobContext) -> str:
    return threading.current_thread().name


def raise_payload(ctx: JobContext) -> object:
    """Raise the payload when it is an exception, else return it."""
    if isinstance(ctx.payload, BaseException):
        raise ctx.payload
    return ctx.payload


def where_and_state(ctx: JobContext) -> tuple[str, object]:
    """The thread running the job and the setup state it sees; a :class:`Probe` payload
    holds the job until released, so that several jobs run at once."""
    if isinstance(ctx.payload, Probe):
        ctx.payload.enter()
        ctx.payload.release.wait()
    return threading.current_thread().name, ctx.state


def context_seen(ctx: JobContext) -> tuple[object, ...]:
    """What the job's context holds; a :class:`Probe` payload hears that it started."""
    if isinstance(ctx.payload, Probe):
        ctx.payload.enter()
    return ctx.job_id, ctx.executor_id, ctx.state, dict(ctx.metadata), ctx.cancel_requested


def poll_cancel(ctx: JobContext) -> str:
    """Run until ``ctx.cancel_requested`` (or the probe's release); ``None``: return at once."""
    probe = ctx.payload
    if probe is not None:
        probe.enter()
        while not ctx.cancel_requested and not probe.release.wait(POLL):
            pass
    return threading.current_thread().name


def ignore_cancel(ctx: JobContext) -> str:
    """Block until the probe is released, whatever the pool asks; ``None``: return at once."""
    probe = ctx.payload
    if probe is not None:
        probe.enter()
        probe.release.wait()
    return threading.current_thread().name


# -- async entrypoints --------------------------------------------------------------------


async def await_forever(ctx: JobContext) -> str:
    """Await until cancelled; ``None``: return at once. Reports the running thread."""
    probe = ctx.payload
    if probe is not None:
        probe.enter()
        await anyio.sleep_forever()
    await anyio.lowlevel.checkpoint()
    return threading.current_thread().name


async def async_raise_payload(ctx: JobContext) -> object:
    await anyio.lowlevel.checkpoint()
    return raise_payload(ctx)


async def which_loop(ctx: JobContext) -> tuple[str, str]:
    """The async library and thread the job runs on."""
    await anyio.lowlevel.checkpoint()
    return sniffio.current_async_library(), threading.current_thread().name


async def block_the_loop(ctx: JobContext) -> str:
    """An async job that holds its thread's loop in a blocking call until released."""
    probe = ctx.payload
    probe.enter()
    probe.release.wait()  # blocking the loop is the fault under test
    return "released"


def exit_or_echo(ctx: JobContext) -> object:
    """Raise ``SystemExit`` when the payload says "exit"; else return the payload."""
    if ctx.payload == "exit":
        raise SystemExit(3)
    return ctx.payload


async def aexit_or_echo(ctx: JobContext) -> object:
    """The async ``exit_or_echo``."""
    await anyio.lowlevel.checkpoint()
    if ctx.payload == "exit":
        raise SystemExit(3)
    return ctx.payload
