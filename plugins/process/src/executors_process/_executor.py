"""The host side of one worker process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import pickle
import signal
import socket
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import psutil
import sniffio

from executors import (
    EntrypointError,
    ExecutorsError,
    ExecutorState,
    FailureReason,
    Health,
    JobOutcome,
    LaunchError,
    RemoteError,
)
from executors.backend import describe_os_error, not_ready

from . import _worker
from ._forkserver import WORKER_NAME_PREFIX
from ._protocol import ErrorInfo, Frame, FrameBuffer, Message, encode, error_info, widen
from ._server import ServedProcess

#: buffers one sendmsg() takes (Linux's IOV_MAX is 1024)
_IOV_MAX = 512

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess
    from typing import TypeAlias

    from ._server import ServerContext

    WorkerContext: TypeAlias = SpawnContext | ForkServerContext | ServerContext
    WorkerProcess: TypeAlias = BaseProcess | ServedProcess

    from anyio.abc import TaskGroup

    from executors import Job, PoolConfig

    from ._backend import ProcessOptions

logger = logging.getLogger("executors.process")


class WorkerError(ExecutorsError, RuntimeError):
    """Raised when a worker process failed in a way that cannot be shown as the original
    exception: it exited during start, or its exception did not pickle."""


@attrs.frozen
class WorkerSpec:
    """What every worker of one pool needs; built once by the backend."""

    context: WorkerContext
    config: PoolConfig
    options: ProcessOptions
    task_group: TaskGroup = attrs.field(repr=False)
    #: idle workers' memory is read only when a memory knob is set: PSS costs a read of
    #: smaps (about 1.6 ms); a busy worker's is always read (see health())
    wants_memory: bool


def describe_exit(exitcode: int | None) -> str:
    """'exit code 3', 'killed by signal 9 (SIGKILL)', or for a worker whose exit code
    could not be learnt (None) 'exit code unknown'."""
    if exitcode is None:
        return "exit code unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


def exception_from(error: ErrorInfo, where: str) -> BaseException:
    """The worker's exception, with its remote traceback as a note; a WorkerError when
    it did not pickle."""
    type_name, message, text, pickled = error
    exc: BaseException | None = None
    if pickled is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(pickled)
    if not isinstance(exc, BaseException):
        exc = WorkerError(f"{type_name}: {message}" if message else type_name)
    exc.add_note(f"raised in {where}; remote traceback:\n{text.rstrip()}")
    return exc


def remote_error(error: ErrorInfo, where: str) -> RemoteError:
    type_name, message, text, _ = error
    return RemoteError(type_name, message, text, exception_from(error, where))


@attrs.define(eq=False)
class ProcessExecutor:
    """One worker process.

    The job socket is request and reply: the task that sends ``init`` or a job reads the
    one reply itself, with no hand-off between tasks. Background tasks in the backend's
    task group (control reader, exit watcher, pinger) end when the process has exited.
    """

    id: str
    _spec: WorkerSpec = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    _process: WorkerProcess | None = attrs.field(init=False, default=None)
    pid: int | None = attrs.field(init=False, default=None)
    _sock: socket.socket | None = attrs.field(init=False, default=None, repr=False)
    _replies: FrameBuffer = attrs.field(init=False, factory=FrameBuffer, repr=False)
    # On asyncio, the job socket stays registered with the loop for the worker's life
    # (registering it for each reply cost two system calls a job): a reader callback
    # collects the replies here (None: the socket closed) and wakes the waiting task.
    _asyncio_loop: asyncio.AbstractEventLoop | None = attrs.field(
        init=False, default=None, repr=False
    )
    _inbox: collections.deque[Message | None] = attrs.field(
        init=False, factory=collections.deque, repr=False
    )
    _waiter: asyncio.Future[None] | None = attrs.field(init=False, default=None, repr=False)
    _registered: bool = attrs.field(init=False, default=False, repr=False)
    # The worker's end of the job socket closed with data it had not read (the kernel
    # then resets the connection instead of ending it): the worker died before it read
    # the last request whole, so that request never started.
    _unread: bool = attrs.field(init=False, default=False, repr=False)
    # Pongs and log records travel apart from jobs, so that a worker's answer to a ping
    # never waits behind a job.
    _control: socket.socket | None = attrs.field(init=False, default=None, repr=False)
    _side: FrameBuffer = attrs.field(init=False, factory=FrameBuffer, repr=False)
    _exited: anyio.Event = attrs.field(init=False, factory=anyio.Event, repr=False)
    exitcode: int | None = attrs.field(init=False, default=None)
    # ping seq -> when it was sent; at most one is outstanding
    _pings: dict[int, float] = attrs.field(init=False, factory=dict, repr=False)
    _last_rtt: float | None = attrs.field(init=False, default=None)
    _background: anyio.CancelScope = attrs.field(init=False, factory=anyio.CancelScope, repr=False)

    # -- JobExecutor -----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            init = encode(("init", *self._init_args()))
            if isinstance(init, list):  # never in practice: references are small
                init = b"".join(init)
            try:
                unsent = await self._launch_process(init)
            except OSError as exc:
                msg = f"cannot start {self._where()}: {describe_os_error(exc)}"
                raise WorkerError(msg) from exc
            if unsent:
                await self._send_frame(unsent, self._sock)
            reply = await self._reply()
            if reply is None:
                await self._exited.wait()
                msg = f"{self._where()} exited during start: {describe_exit(self.exitcode)}"
                raise WorkerError(msg)
            if reply[0] != "ready":
                error = exception_from(self._init_error_of(reply), self._where())
                raise _placed(error, self._where())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.kill()
            raise
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not ExecutorState.READY:
            raise not_ready(self.id, job.id, self.state)
        try:
            frame = encode(("job", job.id, job.payload))
        except Exception as exc:
            problem = pickle.PicklingError(
                f"the payload of job {job.id} cannot be pickled: {type(exc).__name__}: {exc}"
            )
            error = RemoteError.from_exception(problem)
            return JobOutcome.failure(job.id, FailureReason.RAISED, error)
        self.state = ExecutorState.BUSY
        try:
            if isinstance(frame, bytes):
                # Usually the whole frame goes at once, with no coroutine to run for it.
                sent = self._send_now(frame)
                if sent < len(frame):
                    await self._deliver(job.id, memoryview(frame)[sent:])
            else:  # large buffers, sent as they lie in memory
                await self._deliver(job.id, frame)
            reply = await self._reply()
            if reply is None:
                # The worker died: wait for its exit status, to say how it died.
                await self._exited.wait()
        except BaseException:
            # Cancelled (timeout, cancel, drain): the job cannot be stopped half-way in
            # another process, so the worker goes, and nothing is left behind.
            with anyio.CancelScope(shield=True):
                await self.kill()
            raise
        if reply is None and self._unread:
            # It died (a SIGKILL from outside, say) before it read the job: the job never
            # started, and the pool may run it elsewhere.
            msg = (
                f"{self._where()} died before it read job {job.id} "
                f"({describe_exit(self.exitcode)}): the job never started"
            )
            raise LaunchError(msg)
        return self._outcome(job, reply)

    async def aclose(self) -> None:
        if self._process is None or self._exited.is_set():
            await self.kill()
            return
        self.state = ExecutorState.CLOSING
        family = self._descendants()
        with contextlib.suppress(OSError):
            await self._send_frame(encode(("shutdown",)), self._sock)
        await self._exited.wait()
        # Grandchildren that outlived the worker are killed too: the whole tree goes.
        _kill_all(family)
        self._finish()

    async def kill(self) -> None:
        if self._process is not None and not self._exited.is_set():
            _kill_all([*self._descendants(), self._process_handle()])
            with anyio.CancelScope(shield=True):
                await self._exited.wait()
        self._finish()

    async def wait_exited(self) -> None:
        """Returns once the worker process has exited, for whatever reason: the pool
        replaces a worker that died while idle at once."""
        await self._exited.wait()

    def health(self) -> Health:
        alive = self._process is not None and not self._exited.is_set()
        # A busy worker's memory is always read (its job may carry a limit of its own:
        # pool.run(..., memory_limit_mb=)); an idle one's only for the pool's own knobs.
        measured = self._spec.wants_memory or self.state is ExecutorState.BUSY
        memory = self.memory_mb() if alive and measured else None
        return Health(alive=alive, memory_mb=memory, ping_latency=self._ping_latency())

    # -- measurements ------------------------------------------------------------------------

    def memory_mb(self) -> float | None:
        """PSS, else USS, else RSS of the worker, in MiB. RSS counts the pages shared
        with the fork server in every worker, so it is the last resort."""
        try:
            process = psutil.Process(self.pid)
            try:
                info = process.memory_full_info()
                used = getattr(info, "pss", None) or info.uss
            except (psutil.AccessDenied, AttributeError):
                used = process.memory_info().rss
        except psutil.Error:
            return None
        return float(used) / (1024 * 1024)

    def _ping_latency(self) -> float | None:
        if self._pings:
            return anyio.current_time() - min(self._pings.values())
        return self._last_rtt

    # -- process -----------------------------------------------------------------------------

    def _init_args(self) -> tuple[object, object, int]:
        config = self._spec.config
        return (config.entrypoint, config.setup, logging.getLogger().getEffectiveLevel())

    async def _launch_process(self, init: bytes) -> memoryview:
        """Starts the worker with ``init`` (its first message) waiting for it on its job
        socket: it reads it as soon as it runs, with no round trip to the host on the
        way to its first reply. Returns what of ``init`` the socket did not take."""
        # Either socketpair, or the start itself, may fail (EMFILE, EAGAIN): nothing
        # created here outlives a failure.
        parent, child = socket.socketpair()
        try:
            control, control_child = socket.socketpair()
        except BaseException:
            parent.close()
            child.close()
            raise
        widen(parent, child)
        parent.setblocking(False)
        unsent = memoryview(init)
        with contextlib.suppress(BlockingIOError):
            unsent = unsent[parent.send(unsent) :]
        try:
            process = self._spec.context.Process(
                target=_worker.main,
                args=(child, control_child, self.id, self._spec.options.keep_freed_mb),
                name=f"{WORKER_NAME_PREFIX}{self.id}",
                daemon=False,
            )
            # Off the event loop: the loop meanwhile serves the workers started before
            # and the pool's jobs.
            await _start_off_the_loop(process, self._spec.config.close_timeout)
        except BaseException:
            parent.close()
            control.close()
            raise
        finally:
            child.close()
            control_child.close()
        control.setblocking(False)
        self._process, self._sock, self._control = process, parent, control
        if sniffio.current_async_library() == "asyncio":
            self._asyncio_loop = asyncio.get_running_loop()
            self._asyncio_loop.add_reader(parent.fileno(), self._on_readable)
            self._registered = True
        self.pid = process.pid
        self._spec.task_group.start_soon(self._supervise)
        return unsent

    async def _supervise(self) -> None:
        with self._background:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_control)
                tg.start_soon(self._ping)
                await self._wait_for_exit()
                tg.cancel_scope.cancel()

    async def _wait_for_exit(self) -> None:
        process = self._process
        assert process is not None
        if isinstance(process, ServedProcess):
            await process.ended()
        else:
            # The sentinel is readable once the process has ended (multiprocessing keeps
            # it open until process.close()).
            await anyio.wait_readable(process.sentinel)
        process.join()
        self.exitcode = process.exitcode
        self.state = ExecutorState.CLOSED
        self._exited.set()

    def _process_handle(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.pid)
        except psutil.Error:
            return None

    def _descendants(self) -> list[psutil.Process | None]:
        handle = self._process_handle()
        if handle is None:
            return []
        try:
            return list(handle.children(recursive=True))
        except psutil.Error:
            return []

    def _finish(self) -> None:
        self.state = ExecutorState.CLOSED
        self._background.cancel()
        self._stop_reading()
        for sock in (self._sock, self._control):
            if sock is not None:
                sock.close()
        self._sock = self._control = None
        if self._process is not None and self._exited.is_set():
            self._process.close()

    # -- messages ----------------------------------------------------------------------------

    async def _reply(self) -> Message | None:
        """The worker's reply to the request just sent; None if the worker is gone.

        Log records the worker sent before its reply are relayed first, so a job's logs
        always reach the host's logging before its outcome.
        """
        loop = self._asyncio_loop
        if loop is None:
            reply = await self._receive_reply()
        else:
            # What the reader callback collected (see _on_readable); awaited here, not in
            # a helper coroutine: this runs once a job.
            while not self._inbox:
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            reply = self._inbox.popleft()
            if reply is None:
                self._inbox.append(None)  # and so for every later request
            else:
                assert not self._inbox or self._inbox[0] is None, (
                    f"{self._where()} sent two replies"
                )
        if reply is not None and (reply[0] != "result" or reply[4]):
            self._relay_control()
        return reply

    def _on_readable(self) -> None:
        """asyncio's reader callback for the job socket (outside any task)."""
        sock = self._sock
        while sock is not None:
            data = self._recv(sock, self._replies.pending())
            if data is None:
                break
            if not data:
                self._stop_reading()
                return
            if isinstance(data, int):  # into a large reply's own buffers
                self._inbox.extend(self._replies.filled(data))
                continue
            self._inbox.extend(self._replies.feed(data))
            if len(data) < 1 << 16:
                # Drained, most likely: the loop calls back if more has come (a recv
                # that would fail with EAGAIN is a system call saved per reply).
                break
        if self._inbox and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _recv(self, sock: socket.socket, target: memoryview | None) -> bytes | int | None:
        """What the job socket holds: None if nothing yet, b"" once the worker's end is
        closed (noting whether it closed with data unread, see ``_unread``). With
        ``target`` (where a large frame's next bytes go), received into it: how many came,
        0 once the end is closed."""
        try:
            return sock.recv(1 << 16) if target is None else sock.recv_into(target)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            self._unread = True
            return b""
        except OSError:
            return b""

    def _stop_reading(self) -> None:
        """The socket closed, or the executor is finished: unregister it, and tell a
        task waiting for a reply that none will come."""
        loop = self._asyncio_loop
        if loop is None or not self._registered:
            return
        self._registered = False
        if self._sock is not None and not loop.is_closed():
            loop.remove_reader(self._sock.fileno())
        self._inbox.append(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _receive_reply(self) -> Message | None:
        sock = self._sock
        assert sock is not None
        while True:
            data = self._recv(sock, self._replies.pending())
            if data is None:
                await anyio.wait_readable(sock)
                continue
            if not data:
                return None
            if isinstance(data, int):  # into a large reply's own buffers
                replies = self._replies.filled(data)
            else:
                replies = self._replies.feed(data)
            if replies:
                assert len(replies) == 1, f"{self._where()} sent {len(replies)} replies"
                return replies[0]

    async def _read_control(self) -> None:
        control = self._control
        assert control is not None
        while self._relay_control():
            await anyio.wait_readable(control)

    def _relay_control(self) -> bool:
        """Handle every pong and log record waiting on the control socket, without
        blocking. False once the socket is closed."""
        control = self._control
        while control is not None:
            try:
                data = control.recv(1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                return False
            for message in self._side.feed(data):
                if message[0] == "pong":
                    self._pong(message[1])
                elif message[0] == "log":
                    _relog(message[1])
        return False

    def _init_error_of(self, reply: Message) -> ErrorInfo:
        if reply[0] == "init_failed":
            error: ErrorInfo = reply[1]
            return error
        return self._undecodable(reply, "the init message")

    def _undecodable(self, reply: Message, what: str) -> ErrorInfo:
        """A frame did not unpickle: in the worker (``undecodable_in_worker``: the
        request) or here (``undecodable``: the reply). The error says which side."""
        side = "worker" if reply[0] == "undecodable_in_worker" else "host"
        type_name, message, text, _ = reply[1]
        problem = pickle.UnpicklingError(
            f"{what} cannot be unpickled in the {side}: {type_name}: {message}"
        )
        name, description, _, pickled = error_info(problem)
        return (name, description, text, pickled)  # the traceback says where it failed

    async def _ping(self) -> None:
        serial = 0
        while True:
            await anyio.sleep(self._spec.config.ping_interval)
            if self._pings or self.state is ExecutorState.CLOSING:
                continue
            serial += 1
            self._pings[serial] = anyio.current_time()
            try:
                await self._send_frame(encode(("ping", serial)), self._control)
            except OSError:
                return

    def _pong(self, serial: int) -> None:
        sent = self._pings.pop(serial, None)
        if sent is None:
            return
        self._last_rtt = rtt = anyio.current_time() - sent
        if rtt > self._spec.options.high_ping_threshold:
            logger.warning(
                "%s answered a ping in %.3f s (high_ping_threshold = %s s)",
                self._where(),
                rtt,
                self._spec.options.high_ping_threshold,
            )

    async def _send_frame(self, frame: Frame | memoryview, sock: socket.socket | None) -> None:
        if sock is None:
            msg = f"{self._where()} is closed"
            raise BrokenPipeError(msg)
        # Each socket has one sender at a time (the job socket: start, the running job,
        # aclose; the control socket: the pinger), so no lock is taken. A send cancelled
        # half-way leaves a torn frame: every cancellation of a send ends in kill().
        views = [
            memoryview(part).cast("B")
            for part in ([frame] if not isinstance(frame, list) else frame)
        ]
        views = [view for view in views if view]
        while views:
            try:
                sent = sock.sendmsg(views[:_IOV_MAX]) if len(views) > 1 else sock.send(views[0])
            except BlockingIOError:
                await anyio.wait_writable(sock)
                continue
            while sent:
                step = min(sent, len(views[0]))
                sent -= step
                views[0] = views[0][step:]
                if not views[0]:
                    views.pop(0)

    def _send_now(self, frame: bytes) -> int:
        """Sends what the job socket takes of ``frame`` without waiting; how many bytes
        went. 0 on any error: ``_deliver`` then meets it again and says what it was."""
        sock = self._sock
        if sock is None:
            return 0
        try:
            return sock.send(frame)
        except OSError:
            return 0

    async def _deliver(self, job_id: str, frame: Frame | memoryview) -> None:
        try:
            await self._send_frame(frame, self._sock)
        except OSError as exc:
            # The frame never arrived whole: the worker cannot have accepted the job.
            how = describe_exit(self.exitcode) if self._exited.is_set() else "its exit not seen yet"
            msg = f"{self._where()} is gone ({how}): job {job_id} not sent"
            raise LaunchError(msg) from exc

    def _outcome(self, job: Job, reply: Message | None) -> JobOutcome:
        if reply is None:
            detail = f"{self._where()} died running job {job.id}: {describe_exit(self.exitcode)}"
            error = RemoteError("executors_process.WorkerCrashed", detail, "")
            return JobOutcome.failure(job.id, FailureReason.CRASHED, error)
        if not self._exited.is_set():
            self.state = ExecutorState.READY
            if (limit := self._spec.options.recycle_memory_mb) is not None:
                self._recycle_if_over_memory(limit)
        if reply[0] == "result":
            _, _, ok, value, _ = reply
            if ok:
                return JobOutcome.success(job.id, value)
        else:
            what = f"the {'payload' if reply[0] == 'undecodable_in_worker' else 'result'}"
            value = self._undecodable(reply, f"{what} of job {job.id}")
        return JobOutcome.failure(job.id, FailureReason.RAISED, remote_error(value, self._where()))

    def _recycle_if_over_memory(self, limit: float) -> None:
        used = self.memory_mb()
        if used is not None and used > limit:
            logger.info(
                "recycling %s: %.0f MiB > recycle_memory_mb = %s", self._where(), used, limit
            )
            # Not READY: the pool closes it instead of reusing it.
            self.state = ExecutorState.CLOSING

    def _where(self) -> str:
        if self.pid is None:
            return f"worker {self.id} (no process yet)"
        return f"worker {self.id} (pid {self.pid})"


def _placed(exc: BaseException, where: str) -> BaseException:
    """An entrypoint or setup that did not resolve in a worker (but did in the host,
    where ``open_pool`` checked it: its module imports differently there) says which
    worker in its message, not only in its remote traceback."""
    if type(exc) is not EntrypointError:
        return exc
    placed = EntrypointError(f"{where}: {exc}")
    for note in getattr(exc, "__notes__", ()):
        placed.add_note(note)
    return placed


async def _start_off_the_loop(process: WorkerProcess, give_up_after: float) -> None:
    """A worker of the backend's fork server: its request sent at once, and its pid
    awaited. Not shielded: the server may be slow to answer (a module it preloads for a
    pool takes long to import), and a start cancelled meanwhile (initialize_timeout, a
    drain) leaves nothing behind (see ``ServedProcess.start_async`` for
    ``give_up_after``).

    Otherwise ``process.start()`` in a thread, shielded: a start cannot be taken back
    half-way, and a cancellation meanwhile is taken at the next checkpoint, with the
    worker known (the caller kills it). On the loop's own thread where no thread can be
    started (a limit on tasks, which threads count against): the start then fails, or
    not, for itself, with the error that says why."""
    if isinstance(process, ServedProcess):
        await process.start_async(give_up_after)
        return
    with anyio.CancelScope(shield=True):
        await _start_in_a_thread(process)


async def _start_in_a_thread(process: BaseProcess) -> None:
    began = False

    def start() -> None:
        nonlocal began
        began = True
        process.start()

    try:
        await anyio.to_thread.run_sync(start)
    except RuntimeError:
        if began:
            raise
        process.start()


def _kill_all(processes: list[psutil.Process | None]) -> None:
    for process in processes:
        if process is not None:
            with contextlib.suppress(psutil.Error):
                process.kill()


def _relog(fields: dict[str, Any]) -> None:
    record = logging.makeLogRecord(fields)
    logger_ = logging.getLogger(record.name)
    if logger_.isEnabledFor(record.levelno):
        logger_.handle(record)
