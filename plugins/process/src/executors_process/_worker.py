"""What runs inside a worker process. Imports little: the standard library, the frame
protocol, and the core (for ``JobContext`` and resolving entrypoints), which the fork server
preloads.

Two sockets. The job socket is strictly request and reply: the main thread receives
the setup and the jobs, runs them, and sends one reply to each; no hand-off between
threads on the path of a job, and the host reads each reply in the task that waits for
it. The control socket carries everything else: a thread of its own answers pings at
once (so a worker busy in a sync job still answers unless it is really stuck), and log
records go there from any thread, each sent before the reply of the job that logged
it. The worker exits when the host asks, when the host's end of either socket closes,
and (on Linux) when its parent dies.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import inspect
import itertools
import logging
import os
import pickle
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from executors import JobContext, resolve_callable

from ._protocol import Frame, FrameBuffer, Message, encode, error_info, send_all

if TYPE_CHECKING:
    import asyncio
    import socket
    from collections.abc import Callable, Iterator
    from types import FrameType

_PR_SET_PDEATHSIG = 1

#: In a worker process: the id of the executor it is. The backend refuses to open a
#: process pool where this is set (see ``ProcessBackend.open``).
CURRENT_EXECUTOR: str | None = None


def main(
    sock: socket.socket,
    control: socket.socket,
    executor_id: str,
    keep_freed_mb: int = 0,
    *,
    shielded: bool = False,
) -> None:
    """The worker's entry point (the ``multiprocessing.Process`` target). ``shielded``:
    SIGINT and SIGTERM already have a handler that does nothing (the fork server's)."""
    global CURRENT_EXECUTOR
    CURRENT_EXECUTOR = executor_id
    if not shielded:
        shield_from_group_signals()
    if keep_freed_mb:
        keep_freed_memory(keep_freed_mb)
    sock.setblocking(True)
    control.setblocking(True)
    side = _Outbox(control)
    # Only this thread sends on the job socket (the replies): no lock.
    worker = _Worker(functools.partial(send_all, sock), executor_id)
    _forward_logging(side, worker)
    messages = _receive(sock)
    first = next(messages)
    if first[0] == "init" and first[2] is None:
        # No setup: ready first, and only then what is for later (the parent-death
        # signal, the thread that answers pings, which come every ping_interval): the
        # pool has its worker that much sooner. Four workers started on two CPUs were
        # ready about 6% sooner.
        worker.handle(first)
        _supervised(control, side)
    else:
        # A setup may take long: pings are answered meanwhile.
        _supervised(control, side)
        messages = itertools.chain([first], messages)
    for message in messages:
        kind = message[0]
        if kind == "job":  # the usual message first: one comparison a job
            worker.job(message[1], message[2])
        elif kind == "shutdown":
            break
        else:
            worker.handle(message)
        # A job's payload is not kept while the next frame comes in: the next large
        # payload may then take its memory (see keep_freed_memory).
        message = None  # type: ignore[assignment]
    worker.close()


def _supervised(control: socket.socket, side: _Outbox) -> None:
    """Dies with its parent, and answers pings from a thread of its own."""
    _die_with_parent()
    # A bare thread: threading.Thread's bookkeeping (its objects, the wait for the
    # thread to start) cost a new worker half a millisecond of CPU and a hundred pages
    # copied from the server, against a tenth of that. It never joins: like a daemon,
    # it ends with the worker.
    _thread.start_new_thread(_answer_pings, (control, side))


def shield_from_group_signals() -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole process group, and ``kill -TERM
    -PGID`` (or a service manager) sends SIGTERM to it: the host decides what happens
    to running jobs (drain, then cancel), so the worker ignores both. It does so with a
    handler that does nothing rather than ``SIG_IGN``, which the programs a job runs
    would inherit: they start with the default actions."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A signal handler that does nothing."""


def _libc(name: str) -> Any:
    """The C library's function ``name`` on Linux; None elsewhere or if it cannot be
    loaded. Looked up when this module is imported: in the fork server, once for every
    worker (looked up in each new worker, it cost a tenth of a millisecond of its
    start)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):  # mallopt: not glibc
        return None


_PRCTL = _libc("prctl")
_MALLOPT = _libc("mallopt")


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGKILL this worker when its parent dies, so a
    SIGKILLed host (whose fork server then exits) leaves no orphan."""
    if _PRCTL is None:
        return
    parent = os.getppid()
    with contextlib.suppress(OSError):
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


#: glibc's mallopt() parameters
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory(megabytes: int) -> bool:
    """Has this process's malloc keep up to ``megabytes`` MiB of freed memory for reuse,
    large blocks included; whether it could (glibc only).

    By default glibc maps every block of 32 MiB or more afresh and unmaps it once freed:
    each large payload a worker receives then costs a page fault for every 4 KiB of it
    (about 0.4 ms a MiB on a virtual machine, more than the copy). Taken from the heap
    instead, and kept there when freed (up to ``megabytes`` at its top), the next large
    payload lands in memory that is already mapped."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(_M_MMAP_MAX, 0)) and bool(_MALLOPT(_M_TRIM_THRESHOLD, megabytes << 20))


class _Outbox:
    """Sends messages on the control socket from any thread (pongs, log records)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        frame = encode(message)
        with self._lock:
            send_all(self._sock, frame)


def _receive(sock: socket.socket) -> Iterator[Message]:
    buffer = FrameBuffer()
    while True:
        target = buffer.pending()
        try:
            if target is not None:  # a large frame: straight into its buffers
                count = sock.recv_into(target)
            else:
                data = sock.recv(1 << 16)
                count = len(data)
        except OSError:
            count = 0
        if not count:
            # The host closed its end: it is gone. Nobody can receive our results.
            os._exit(0)
        yield from buffer.filled(count) if target is not None else buffer.feed(data)


def _answer_pings(control: socket.socket, side: _Outbox) -> None:
    for message in _receive(control):
        if message[0] == "ping":
            side.send(("pong", message[1]))


class _Worker:
    def __init__(self, send: Callable[[Frame], None], executor_id: str) -> None:
        self._send = send
        self.executor_id = executor_id
        self.job_id: str | None = None
        # A log record went to the host since the last reply: the reply says so, and
        # the host relays the control socket before the outcome.
        self.logged = False
        self._entrypoint: Callable[..., Any] | None = None
        self._state: object = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle(self, message: Message) -> None:
        """Any message but a job or the shutdown."""
        if message[0] == "init":
            self._init(*message[1:])
        elif message[0] == "undecodable":
            # Only the host knows whose frame it was (a job's payload, or the init).
            self._send(encode(("undecodable_in_worker", message[1])))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()

    def _call(self, function: Callable[..., Any], *args: object) -> object:
        result = function(*args)
        if inspect.isawaitable(result):
            if self._loop is None:
                # Imported here: a worker of a `def` entrypoint never needs it, and the
                # fork server, which imports this module, preloads it for an `async def`
                # one (see _backend._preload).
                import asyncio

                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(_awaited(result))
        return result

    def _init(self, entrypoint: str | Any, setup: str | Any | None, log_level: int) -> None:
        root = logging.getLogger()
        if root.level != log_level:  # setLevel empties every logger's cache
            root.setLevel(log_level)
        try:
            self._entrypoint = resolve_callable(entrypoint)
            if setup is not None:
                self._state = self._call(resolve_callable(setup, what="setup"))
        except BaseException as exc:
            self._send(encode(("init_failed", error_info(exc))))
            return
        self._send(encode(("ready",)))

    def job(self, job_id: str, payload: object) -> None:
        assert self._entrypoint is not None, "a job before init"
        self.job_id = job_id
        ctx = JobContext(
            payload=payload, job_id=job_id, executor_id=self.executor_id, state=self._state
        )
        try:
            value = self._call(self._entrypoint, ctx)
        except Exception as exc:
            self._reply(job_id, False, error_info(exc))
        else:
            self._reply(job_id, True, value)
        finally:
            self.job_id = None

    def _reply(self, job_id: str, ok: bool, value: object) -> None:
        logged, self.logged = self.logged, False
        try:
            frame = encode(("result", job_id, ok, value, logged))
        except Exception as exc:
            problem = pickle.PicklingError(
                f"the result of job {job_id} cannot be pickled: {type(exc).__name__}: {exc}"
            )
            frame = encode(("result", job_id, False, error_info(problem), logged))
        self._send(frame)


async def _awaited(awaitable: Any) -> object:
    return await awaitable


_PLAIN = (str, int, float, bool, type(None))


class _ForwardHandler(logging.Handler):
    """Sends every log record to the host, with the executor and job ids attached."""

    def __init__(self, outbox: _Outbox | None, worker: _Worker | None) -> None:
        super().__init__()
        self._outbox = outbox
        self._worker = worker

    def bind(self, outbox: _Outbox, worker: _Worker) -> None:
        self._outbox, self._worker = outbox, worker

    def emit(self, record: logging.LogRecord) -> None:
        if self._outbox is None or self._worker is None:  # in the fork server
            if logging.lastResort is not None and record.levelno >= logging.lastResort.level:
                logging.lastResort.handle(record)
            return
        try:
            # Only plain values cross: an `extra` object that does not pickle must not
            # cost the record.
            fields = {k: v if isinstance(v, _PLAIN) else repr(v) for k, v in vars(record).items()}
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = self.formatter_or_default().formatException(record.exc_info)
            fields["exc_info"] = None
            fields["executor_id"] = self._worker.executor_id
            fields["job_id"] = self._worker.job_id
            self._worker.logged = True
            self._outbox.send(("log", fields))
        except Exception:
            self.handleError(record)

    def formatter_or_default(self) -> logging.Formatter:
        return self.formatter or logging.Formatter()


def _forward_logging(outbox: _Outbox, worker: _Worker) -> None:
    root = logging.getLogger()
    handler = _PREMADE
    if handler is None:
        handler = _ForwardHandler(outbox, worker)
    else:
        handler.bind(outbox, worker)
    if root.handlers != [handler]:
        for other in list(root.handlers):
            root.removeHandler(other)
        root.addHandler(handler)


#: made by the fork server for every worker it forks (see prepare_forks)
_PREMADE: _ForwardHandler | None = None


def prepare_forks() -> None:
    """In the fork server: make, once, the log handler that each worker would make as it
    starts (a lock, registrations with the logging module: objects whose pages each
    worker would otherwise copy), on the server's root logger. Until a worker binds it,
    it passes records on as a logger without handlers would (``logging.lastResort``)."""
    global _PREMADE
    if _PREMADE is None:
        _PREMADE = _ForwardHandler(None, None)
        logging.getLogger().addHandler(_PREMADE)
