"""Job and setup functions usable as entrypoints on any backend (importable inside
workers), including fault-injecting ones for the conformance suite.

Each job reads its parameter from the payload. Sync jobs that run long poll
:attr:`~executors.JobContext.cancel_requested`, except the ones whose point is to
ignore it; every one of those is bounded, so a test that fails still ends.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

    from executors._job import JobContext

#: the longest any fault-injecting job or setup runs, in seconds, whatever it ignores
BOUND = 30.0
_POLL = 0.005
#: the longest an async wait sleeps between two ticks
_TICK_SLEEP = 0.02


def _nothing() -> None:
    pass


class InjectedFault(RuntimeError):
    """What the raising jobs and setups raise."""


class InjectedBaseFault(BaseException):
    """A :class:`BaseException` that is neither an ``Exception`` nor a cancellation,
    raised by a ``raise_base`` fault: a job's code may end with one too."""


#: the exceptions a ``raise_base`` fault can raise, by name
BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "InjectedBaseFault": InjectedBaseFault,
}

FaultKind = Literal[
    "echo",
    "raise",
    "raise_base",
    "sleep",
    "hang",
    "ignore_cancel",
    "crash",
    "block_loop",
    "allocate",
]


@attrs.frozen
class Fault:
    """What one job of :func:`fault` / :func:`afault` does, as its payload.

    ``echo`` returns ``value``; ``raise`` raises :class:`InjectedFault` with ``value`` as
    its message; ``raise_base`` raises the :data:`BASE_EXCEPTIONS` member named
    ``value``; ``sleep`` waits ``value`` seconds (cancellable) and returns them;
    ``hang`` waits until cancelled (at most :data:`BOUND` seconds; the sync job then
    returns ``None``, as a cooperative job stops early); ``ignore_cancel`` waits
    ``value`` seconds (at most :data:`BOUND`) and ignores every request to stop: the sync
    job never looks at ``cancel_requested``, the async one shields its wait, so only a
    kill of its slot ends it sooner; ``crash`` ends the process with exit status
    ``value``; ``block_loop`` blocks the thread (an async job: its event loop) for
    ``value`` seconds; ``allocate`` touches ``value`` MiB, holds them
    ``hold`` seconds (cancellable) and returns the size in bytes.

    With ``witness`` (the address of a :class:`~executors.testing.witness.Witness`), the
    job reports to it as its body begins, every :data:`~executors.testing.witness.TICK`
    seconds while it waits, and as its body ends.
    """

    kind: FaultKind
    value: object = None
    #: seconds an ``allocate`` job holds its memory before it returns
    hold: float = attrs.field(default=0.0, repr=False)
    witness: str | None = attrs.field(default=None, repr=False)

    @property
    def succeeds(self) -> bool:
        """Whether the job, left alone, ends with a value."""
        return self.kind in ("echo", "sleep", "block_loop", "allocate", "ignore_cancel")

    @property
    def expected(self) -> object:
        """The value the job returns when it succeeds (``None`` if it never does)."""
        if self.kind == "echo":
            return self.value
        if self.kind in ("sleep", "block_loop"):
            return float(self._number())
        if self.kind == "allocate":
            return int(self._number() * 1024 * 1024)
        if self.kind == "ignore_cancel":
            return "not stopped"
        return None

    def _number(self) -> float:
        assert isinstance(self.value, (int, float)), (
            f"{self.kind} needs a number, not {self.value!r}"
        )
        return float(self.value)


class _Witnessed:
    """Reports a job's body to its fault's witness: ``begin`` on entry, ``end`` (how it
    ended) on exit. A class, not a generator: it must see every exception unchanged,
    ``GeneratorExit`` included."""

    __slots__ = ("_address", "_job_id", "tick")

    def __init__(self, ctx: JobContext, spec: Fault) -> None:
        from .witness import Ticker

        self._address = spec.witness
        self._job_id = ctx.job_id
        self.tick = Ticker(spec.witness, ctx.job_id)
        if self._address is not None:
            from .witness import report

            report(self._address, "begin", ctx.job_id, ctx.executor_id)

    def __enter__(self) -> _Witnessed:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._address is not None:
            from .witness import report

            how = "returned" if kind is None else f"raised {kind.__name__}"
            report(self._address, "end", self._job_id, how)


def fault(ctx: JobContext) -> object:
    """Do what the :class:`Fault` payload says (a payload of another type is echoed).
    Waits poll ``cancel_requested``, except ``ignore_cancel``'s."""
    spec = ctx.payload
    if not isinstance(spec, Fault):
        return spec
    with _Witnessed(ctx, spec) as body:
        if spec.kind == "sleep":
            _wait(ctx, spec._number(), body.tick)
            return spec.expected
        if spec.kind == "hang":
            _wait(ctx, BOUND, body.tick)
            return None
        if spec.kind == "ignore_cancel":
            _wait(None, spec._number(), body.tick)
            return spec.expected
        if spec.kind == "allocate":
            block = _touch(spec._number())  # held until the job returns
            _wait(ctx, spec.hold, body.tick)
            return len(block)
        return _fault_at_once(spec)


async def afault(ctx: JobContext) -> object:
    """:func:`fault`, async: waits are ``anyio.sleep`` (cancellable, except
    ``ignore_cancel``'s, which is shielded), and ``block_loop`` blocks the event loop."""
    import anyio.lowlevel

    spec = ctx.payload
    if not isinstance(spec, Fault):
        return spec
    with _Witnessed(ctx, spec) as body:
        if spec.kind == "sleep":
            await _await(spec._number(), body.tick)
            return spec.expected
        if spec.kind == "hang":
            await _await(BOUND, body.tick)
            return None
        if spec.kind == "ignore_cancel":
            with anyio.CancelScope(shield=True):
                await _await(spec._number(), body.tick)
            return spec.expected
        if spec.kind == "allocate":
            block = _touch(spec._number())  # held until the job returns
            await _await(spec.hold, body.tick)
            return len(block)
        await anyio.lowlevel.checkpoint()
        return _fault_at_once(spec)


def _fault_at_once(spec: Fault) -> object:
    if spec.kind == "echo":
        return spec.value
    if spec.kind == "raise":
        raise InjectedFault(str(spec.value))
    if spec.kind == "raise_base":
        raise BASE_EXCEPTIONS[str(spec.value)]()
    if spec.kind == "crash":
        os._exit(int(spec._number()))
    if spec.kind == "block_loop":
        time.sleep(min(spec._number(), BOUND))
        return spec.expected
    msg = f"unknown fault kind {spec.kind!r}"
    raise ValueError(msg)


async def _await(seconds: float, tick: Callable[[], None]) -> None:
    """Wait ``seconds`` (at most :data:`BOUND`) in the job's event loop, ticking."""
    import anyio

    deadline = time.monotonic() + min(seconds, BOUND)
    while (left := deadline - time.monotonic()) > 0:
        tick()
        await anyio.sleep(min(left, _TICK_SLEEP))


def _touch(mib: float) -> bytearray:
    """``mib`` MiB, every page written (so it is resident, not just reserved)."""
    block = bytearray(int(mib * 1024 * 1024))
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block


def echo(ctx: JobContext) -> object:
    """Return the payload."""
    return ctx.payload


async def aecho(ctx: JobContext) -> object:
    """Return the payload (async)."""
    return ctx.payload


async def scripted(ctx: JobContext) -> object:
    """Follow a :class:`~executors.testing.Script` payload on any async backend:
    wait ``seconds``, then return ``value``, raise, or hang until cancelled. A ``crash``
    script raises too: only a backend can really crash."""
    import anyio

    from ._simulated import Script, SimulatedError

    script = ctx.payload
    if not isinstance(script, Script):
        return script
    await anyio.sleep(script.seconds)
    if script.action == "hang":
        await anyio.sleep_forever()
    if script.action != "succeed":
        raise SimulatedError(script.message)
    return script.value


def scripted_sync(ctx: JobContext) -> object:
    """:func:`scripted` for backends that run only sync entrypoints: waits and hangs
    poll ``cancel_requested`` (a hang returns once cancellation is requested, or after
    :data:`BOUND` seconds)."""
    from ._simulated import Script, SimulatedError

    script = ctx.payload
    if not isinstance(script, Script):
        return script
    _wait(ctx, script.seconds)
    if script.action == "hang":
        _wait(ctx, BOUND)
        return None
    if script.action != "succeed":
        raise SimulatedError(script.message)
    return script.value


def _wait(ctx: JobContext | None, seconds: float, tick: Callable[[], None] = _nothing) -> None:
    """Wait ``seconds`` (at most :data:`BOUND`), polling ``ctx.cancel_requested``
    (never with no ``ctx``) and calling ``tick``."""
    deadline = time.monotonic() + min(seconds, BOUND)
    while time.monotonic() < deadline and not (ctx is not None and ctx.cancel_requested):
        tick()
        time.sleep(_POLL)


def sleep(ctx: JobContext) -> float:
    """Sleep ``payload`` seconds (stopping early once cancellation is requested); return
    the payload."""
    _wait(ctx, float(ctx.payload))
    return float(ctx.payload)


async def asleep(ctx: JobContext) -> float:
    """Sleep ``payload`` seconds (async, cancellable); return the payload."""
    import anyio

    await anyio.sleep(float(ctx.payload))
    return float(ctx.payload)


def raise_error(ctx: JobContext) -> object:
    """Raise :class:`InjectedFault` with the payload as its message."""
    raise InjectedFault(str(ctx.payload))


async def araise_error(ctx: JobContext) -> object:
    """Raise :class:`InjectedFault` with the payload as its message (async)."""
    raise InjectedFault(str(ctx.payload))


def crash(ctx: JobContext) -> object:
    """With an ``int`` payload, end the process at once with that exit status (no
    cleanup, no exception); return any other payload. Only crash a backend that isolates
    crashes."""
    if isinstance(ctx.payload, int):
        os._exit(ctx.payload)
    return ctx.payload


async def acrash(ctx: JobContext) -> object:
    """:func:`crash`, async."""
    return crash(ctx)


def hang_ignoring_cancel(ctx: JobContext) -> object:
    """With a ``float`` payload, wait that many seconds (at most :data:`BOUND`) without
    ever looking at ``cancel_requested``: only a kill stops it sooner. Return any other
    payload at once."""
    if not isinstance(ctx.payload, float):
        return ctx.payload
    seconds = min(ctx.payload, BOUND)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(_POLL)
    return "not killed"


async def ahang(ctx: JobContext) -> object:
    """With a ``float`` payload, wait that many seconds (at most :data:`BOUND`) without
    checking anything: only cancelling its task stops it. Return any other payload."""
    import anyio

    if not isinstance(ctx.payload, float):
        return ctx.payload
    await anyio.sleep(min(ctx.payload, BOUND))
    return "not killed"


async def block_loop(ctx: JobContext) -> float:
    """An async job that blocks its event loop for ``payload`` seconds (at most
    :data:`BOUND`) with ``time.sleep``."""
    seconds = min(float(ctx.payload), BOUND)
    time.sleep(seconds)  # noqa: ASYNC251 -- blocking the loop is the fault injected
    return seconds


def allocate(ctx: JobContext) -> int:
    """Allocate ``payload`` MiB, touch every page, hold it for ``metadata["hold"]``
    seconds (default 0), and return the size in bytes."""
    block = _touch(float(ctx.payload))  # held until the job returns
    _wait(ctx, float(ctx.metadata.get("hold", 0)))
    return len(block)


async def aallocate(ctx: JobContext) -> int:
    """:func:`allocate`, async (the hold is cancellable)."""
    import anyio

    block = _touch(float(ctx.payload))  # held until the job returns
    await anyio.sleep(float(ctx.metadata.get("hold", 0)))
    return len(block)


def count_runs(ctx: JobContext) -> int:
    """Append a line to the file named by the payload, then sleep
    ``metadata["seconds"]`` (default 0, cancellable): each line is one run of the job.
    Returns how many lines the file has."""
    return _count(str(ctx.payload), ctx.job_id, lambda: _wait(ctx, _seconds(ctx)))


async def acount_runs(ctx: JobContext) -> int:
    """:func:`count_runs`, async."""
    import anyio

    # Plain blocking I/O of a few bytes: a worker thread (anyio.Path) could outlive the
    # loop and count as a leak.
    with open(str(ctx.payload), "a") as file:  # noqa: ASYNC230
        file.write(f"{ctx.job_id}\n")
    await anyio.sleep(_seconds(ctx))
    with open(str(ctx.payload)) as file:  # noqa: ASYNC230
        return len(file.readlines())


def report_start(ctx: JobContext) -> str:
    """Send ``"<pid> <thread id>"`` of where the job runs, as one datagram, to the Unix
    socket the payload names, as it begins; returns ``"reported"``."""
    _report_start(str(ctx.payload))
    return "reported"


async def areport_start(ctx: JobContext) -> str:
    """:func:`report_start`, async (a datagram to a local socket does not block)."""
    _report_start(str(ctx.payload))
    return "reported"


def _report_start(path: str) -> None:
    import socket
    import threading

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"{os.getpid()} {threading.get_ident()}".encode(), path)


def _seconds(ctx: JobContext) -> float:
    return min(float(ctx.metadata.get("seconds", 0)), BOUND)


def _count(path: str, job_id: str, then: object) -> int:
    with open(path, "a") as file:
        file.write(f"{job_id}\n")
    if callable(then):
        then()
    with open(path) as file:
        return len(file.readlines())


def setup_raises() -> object:
    """A setup function that raises :class:`InjectedFault`."""
    msg = "injected setup failure"
    raise InjectedFault(msg)


async def asetup_raises() -> object:
    """:func:`setup_raises`, async."""
    msg = "injected setup failure"
    raise InjectedFault(msg)


def setup_hangs() -> object:
    """A setup function that sleeps 5 s (bounded so that a test which waits for it still
    ends): longer than any ``initialize_timeout`` a test sets."""
    time.sleep(5.0)
    return None


async def asetup_hangs() -> object:
    """A setup that waits forever (cancellable)."""
    import anyio

    await anyio.sleep_forever()
    return None
