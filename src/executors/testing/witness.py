"""A witness of what jobs' code really does, for the conformance suite and your tests.

The fault-injecting jobs of :mod:`executors.testing.jobs` (with a :class:`~executors.
testing.jobs.Fault` payload that names a witness) report to it as their body begins,
while it waits (a *tick* every :data:`TICK` seconds), and as it ends. The checker adds
its own marks to the same stream: the moment each job's outcome was delivered. "Ran
twice", "two jobs at once on one executor" and "ran after its outcome" are then facts
read off one ordered record, not guesses from outcomes.

The record is ordered by one Unix datagram socket: the kernel queues each datagram as it
is sent, so every sender on the machine (the checker, threads, worker processes) is
read back in the order it sent. A job that reports to a witness that is gone, or whose
queue stays full for a second, drops the report and goes on: a witness never hangs a
job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

#: seconds between two ticks of a job that waits
TICK = 0.02
#: seconds a report may wait for room in the witness's queue before it is dropped
_SEND_TIMEOUT = 1.0
_SEP = "\x1f"

EventKind = Literal["begin", "tick", "end", "outcome", "mark"]


@attrs.frozen
class Event:
    """One report, in the order the witness received it (which, on one machine, is
    the order it was sent)."""

    #: position in the record, from 0
    seq: int
    kind: EventKind
    job_id: str
    #: ``begin``: the executor id the job's context gave; ``end``: how the body ended
    #: (``returned``, or ``raised <type name>``); ``outcome``: the outcome's status
    detail: str = ""
    #: ``begin``: ``"<pid> <thread id>"`` of where the body runs
    where: str = ""
    #: when the witness read it (``time.monotonic()`` of the checker's process)
    at: float = 0.0

    @property
    def pid(self) -> int | None:
        """The process the body began in (``begin`` only)."""
        head = self.where.partition(" ")[0]
        return int(head) if head.isdigit() else None


# -- the job's side ------------------------------------------------------------------------


def report(address: str, kind: EventKind, job_id: str, detail: str = "") -> None:
    """Send one report to the witness at ``address``; never raises. A socket of its own
    each time: nothing is left open in the job's process (which may be the checker's)."""
    where = f"{os.getpid()} {threading.get_ident()}" if kind == "begin" else ""
    _send(_encode(kind, job_id, detail, where), address)


def _encode(*fields: str) -> bytes:
    return _SEP.join(fields).encode()


def _send(data: bytes, address: str, sock: socket.socket | None = None) -> None:
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.sendto(data, address)
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as own:
            own.settimeout(_SEND_TIMEOUT)
            own.sendto(data, address)


class Ticker:
    """Ticks for one job while it waits: call it often; it reports every :data:`TICK`."""

    __slots__ = ("_address", "_job_id", "_next")

    def __init__(self, address: str | None, job_id: str) -> None:
        self._address = address
        self._job_id = job_id
        self._next = 0.0

    def __call__(self) -> None:
        if self._address is not None and (now := time.monotonic()) >= self._next:
            self._next = now + TICK
            report(self._address, "tick", self._job_id)


# -- the checker's side ----------------------------------------------------------------------


@attrs.define(eq=False)
class Witness:
    """Receives the reports of jobs; use it as a context manager.

    Pass :attr:`address` to the jobs (in their :class:`~executors.testing.jobs.Fault`),
    call :meth:`delivered` as each job's outcome is delivered, and read
    :meth:`problems` for what the record shows went wrong.
    """

    address: str = attrs.field(init=False, default="")
    _directory: str = attrs.field(init=False, default="", repr=False)
    _sock: socket.socket | None = attrs.field(init=False, default=None, repr=False)
    _reader: threading.Thread | None = attrs.field(init=False, default=None, repr=False)
    # Invariant: events[i].seq == i. Appended by the reader thread under _changed.
    _events: list[Event] = attrs.field(init=False, factory=list, repr=False)
    _changed: threading.Condition = attrs.field(init=False, factory=threading.Condition, repr=False)

    def __enter__(self) -> Witness:
        self._directory = tempfile.mkdtemp(prefix="executors-witness-")
        self.address = os.path.join(self._directory, "w")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.address)
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read, args=(sock,), name="executors-witness", daemon=True
        )
        self._reader.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            # Wakes the reader: a datagram of its own, then the close.
            with contextlib.suppress(OSError):
                sock.sendto(b"", self.address)
            if self._reader is not None:
                self._reader.join(5.0)
            sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            if not data or self._sock is None:
                return
            kind, job_id, detail, where = [*data.decode().split(_SEP), "", "", ""][:4]
            with self._changed:
                event = Event(len(self._events), kind, job_id, detail, where, time.monotonic())  # type: ignore[arg-type]
                self._events.append(event)
                self._changed.notify_all()

    # -- marks and reads -----------------------------------------------------------------

    def delivered(self, job_id: str, status: str = "") -> None:
        """Mark the moment ``job_id``'s outcome was delivered (call it right then)."""
        self._mark("outcome", job_id, status)

    def _mark(self, kind: EventKind, job_id: str, detail: str = "") -> None:
        # Sent through the witness's own socket, in line with every job's report.
        if self._sock is not None:
            _send(_encode(kind, job_id, detail, ""), self.address, self._sock)

    def events(self, job_id: str | None = None) -> list[Event]:
        """Every event so far, or ``job_id``'s."""
        with self._changed:
            return [e for e in self._events if job_id is None or e.job_id == job_id]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float) -> bool:
        """Wait until ``predicate(events)`` holds; False if it did not within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._events), timeout)

    def began(self, job_id: str) -> Event | None:
        """``job_id``'s first ``begin``, if its body began."""
        return next((e for e in self.events(job_id) if e.kind == "begin"), None)

    def wait_began(self, job_id: str, timeout: float) -> Event | None:
        """``job_id``'s first ``begin``, waiting up to ``timeout`` seconds for it."""
        self.wait_for(lambda events: any(_is_begin(e, job_id) for e in events), timeout)
        return self.began(job_id)

    def settle(self) -> None:
        """Wait until every report sent before this call has been read."""
        marker = f"settle-{time.monotonic_ns()}"
        self._mark("mark", marker)
        self.wait_for(lambda events: any(e.job_id == marker for e in events), 5.0)

    def problems(self, *, may_run_on: Collection[str] = ()) -> list[str]:
        """What the record shows went wrong: a job that began twice, began on an executor
        that still ran another job, or did anything after its outcome was delivered.
        Jobs in ``may_run_on`` (abandoned by a backend that cannot kill) may run on
        after their outcome."""
        return list(_problems(self.events(), set(may_run_on)))


def _is_begin(event: Event, job_id: str) -> bool:
    return event.kind == "begin" and event.job_id == job_id


def _problems(events: list[Event], may_run_on: set[str]) -> Iterator[str]:
    begun: dict[str, Event] = {}
    delivered: dict[str, Event] = {}
    # executor -> jobs whose body began there and has neither ended nor been delivered
    open_on: dict[str, list[str]] = {}
    reported_after: set[str] = set()
    for event in events:
        job = event.job_id
        if event.kind == "mark":
            continue
        if event.kind == "outcome":
            delivered.setdefault(job, event)
            _close(open_on, job)
            continue
        if job in delivered and job not in may_run_on and job not in reported_after:
            reported_after.add(job)
            yield (
                f"{job} ran after its outcome ({delivered[job].detail or 'delivered'}) was "
                f"delivered: its code reported '{event.kind}' then"
            )
        if event.kind == "begin":
            if job in begun:
                yield (
                    f"{job} ran twice: its body began on {begun[job].detail} and again "
                    f"on {event.detail}"
                )
            begun[job] = event
            others = [j for j in open_on.get(event.detail, []) if j != job]
            if others:
                yield (
                    f"two jobs at once on executor {event.detail}: {job} began while "
                    f"{', '.join(others)} still ran there"
                )
            open_on.setdefault(event.detail, []).append(job)
        elif event.kind == "end":
            _close(open_on, job)


def _close(open_on: dict[str, list[str]], job_id: str) -> None:
    for jobs in open_on.values():
        if job_id in jobs:
            jobs.remove(job_id)
