"""The host side: the backend, its options, and the executor that runs each job in a
fresh ``python -m executors_oneshot._runner`` process."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
import attrs

from executors.backend import (
    Capabilities,
    ExecutorsError,
    ExecutorState,
    FailureReason,
    Health,
    JobOutcome,
    LaunchError,
    RemoteError,
    not_ready,
)

from ._protocol import HEADER, PROTOCOL, RUNNER, Reply, Request, frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import ByteReceiveStream, Process

    from executors.backend import ExecutorFactory, Job, PoolConfig

_CAPABILITIES = Capabilities(
    isolates_crashes=True,  # a job that crashes takes only its own process down
    can_kill_running_job=True,  # a job's process can be killed at any moment
    measures_memory=False,  # health() reports no memory: memory_limit_mb does not apply
    sync_entrypoints=True,
    async_entrypoints=True,  # on an asyncio loop of the job's process
    reusable=True,  # an executor (a slot) runs any number of jobs, each in a new process
    remote=False,
    setup_per_pool=False,  # the setup runs in every job's process
)


class OneshotError(ExecutorsError, RuntimeError):
    """Raised when a job's process failed in a way that cannot be shown as the original
    exception: it could not be started, it exited without replying, or its exception
    did not unpickle in the host (then ``remote`` holds its type, message and traceback)."""

    def __init__(self, message: str, remote: RemoteError | None = None) -> None:
        super().__init__(message)
        self.remote = remote


def _interpreter(inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if not value or shutil.which(value) is None:
        msg = (
            f"{attr.name} = {value!r} is invalid: must be a Python interpreter, as a path "
            "to an executable file or a command found on PATH"
        )
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class OneshotOptions:
    """Options of the oneshot backend (``[tool.executors.oneshot]``)."""

    #: the interpreter that runs each job, as a path or a command on PATH; ``None``: the
    #: host's own (``sys.executable``). executors-oneshot must be installed for it.
    python: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_interpreter)
    )
    #: put the host's ``sys.path`` first in each job's process (as multiprocessing's
    #: spawn does), so modules the host imports from its own directories import there
    #: too; turn it off when ``python`` belongs to another environment
    inherit_sys_path: bool = True


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'killed by signal 9 (SIGKILL)'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


@attrs.frozen
class _Spec:
    """What every executor of one pool needs; built once by ``open()``."""

    command: tuple[str, ...]
    entrypoint: str | Callable[..., Any]
    setup: str | Callable[..., Any] | None
    sys_path: tuple[str, ...] | None


@attrs.frozen
class _Exchange:
    """One process's life: its pid, its reply frame (``None``: it sent no whole reply)
    and its exit status."""

    pid: int
    reply: bytes | None
    returncode: int


@attrs.define(eq=False)
class OneshotExecutor:
    """One slot. It owns no process between jobs: ``start()`` checks the entrypoint and
    the setup in a short-lived process, and each job gets a process of its own."""

    id: str
    _spec: _Spec = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    # The process running now (the start check or a job), for kill(). The task that
    # started it always reaps it, whatever happens.
    _process: Process | None = attrs.field(init=False, default=None, repr=False)

    # -- JobExecutor -----------------------------------------------------------------------

    async def start(self) -> None:
        where = f"the start check of executor {self.id}"
        try:
            request = self._request("start", job_id="", payload=None, metadata={}, label=where)
        except Exception as exc:
            msg = (
                f"executor {self.id}: the entrypoint or setup cannot be sent to a job "
                f"process (only importable functions, or 'module:function' strings, can): "
                f"{type(exc).__name__}: {exc}"
            )
            raise OneshotError(msg) from exc
        try:
            process = await self._spawn()
        except OSError as exc:
            msg = f"executor {self.id} cannot start {self._command_text()}: {exc}"
            raise OneshotError(msg) from exc
        exchange = await self._exchange(process, request)
        where = f"{where} (pid {exchange.pid})"
        reply = _decode(exchange.reply)
        if reply is None and self.state is ExecutorState.CLOSED:
            msg = f"executor {self.id} was closed during {where}"
            raise OneshotError(msg)
        if reply is None:
            msg = (
                f"{where} exited without replying: {describe_exit(exchange.returncode)}; "
                f"its stderr says why (is executors-oneshot installed for "
                f"{self._spec.command[0]}?)"
            )
            raise OneshotError(msg)
        if reply[0] == "error":
            # The setup's own exception when it unpickles here (so that AcquireError's
            # cause is the setup's exception), else a OneshotError carrying its text.
            remote = _remote_error(reply[1:], where)
            assert remote.exception is not None
            raise remote.exception
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not ExecutorState.READY:
            raise not_ready(self.id, job.id, self.state)
        label = f"job {job.id}"
        try:
            request = self._request(
                "job", job_id=job.id, payload=job.payload, metadata=dict(job.metadata), label=label
            )
        except Exception as exc:
            # Only this job fails: nothing was started, and the slot stays READY.
            await anyio.lowlevel.checkpoint()
            problem = pickle.PicklingError(
                f"the payload of job {job.id} cannot be pickled: {type(exc).__name__}: {exc}"
            )
            return JobOutcome.failure(
                job.id, FailureReason.RAISED, RemoteError.from_exception(problem)
            )
        self.state = ExecutorState.BUSY
        try:
            try:
                process = await self._spawn()
            except OSError as exc:
                # Nothing of the job ran: the pool may launch it on another executor.
                msg = (
                    f"executor {self.id} cannot start {self._command_text()} for job "
                    f"{job.id}: {exc}"
                )
                raise LaunchError(msg) from exc
            exchange = await self._exchange(process, request)
        finally:
            # A job that crashed, or was cancelled and killed, took only its own process
            # down: the slot can run the next job (unless kill() closed it).
            if self.state is ExecutorState.BUSY:
                self.state = ExecutorState.READY
        return self._outcome(job, exchange)

    async def aclose(self) -> None:
        # There is nothing to stop gracefully between jobs; a running job is killed.
        await self.kill()

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        if self._process is not None:
            _kill(self._process)  # the task that started it reaps it

    def health(self) -> Health:
        return Health(alive=self.state is not ExecutorState.CLOSED)

    # -- processes ---------------------------------------------------------------------------

    def _request(
        self,
        kind: Literal["start", "job"],
        *,
        job_id: str,
        payload: object,
        metadata: dict[str, str],
        label: str,
    ) -> bytes:
        request: Request = {
            "kind": kind,
            "entrypoint": self._spec.entrypoint,
            "setup": self._spec.setup,
            "executor_id": self.id,
            "job_id": job_id,
            "payload": payload,
            "metadata": metadata,
        }
        body = pickle.dumps(request, protocol=PROTOCOL)
        return frame((self._spec.sys_path, label, body))

    async def _spawn(self) -> Process:
        # Not cancellable half-way: a process that started must be known, to be reaped.
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                self._spec.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the job's prints and logs go to the host's stderr
                # Its own process group: kill() stops whatever the job started too, and
                # Ctrl-C in a terminal reaches the host only (the host decides).
                start_new_session=True,
            )
        self._process = process
        if self.state is ExecutorState.CLOSED:  # kill() came while it started
            _kill(process)
        return process

    async def _exchange(self, process: Process, request: bytes) -> _Exchange:
        """Send ``request``, read the reply, and reap the process. Cancelled (job timeout,
        job cancelled, drain), it kills the process, reaps it and re-raises."""
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            # A process that died at once fails the send: its exit status says why.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await process.stdin.send(request)
            reply = await _read_frame(process.stdout)
            returncode = await process.wait()
        except BaseException:
            _kill(process)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                # Closes the pipes (stdin last: the process exits when it closes) and
                # waits for the exit, so no zombie is left.
                await process.aclose()
            self._process = None
        return _Exchange(process.pid, reply, returncode)

    def _outcome(self, job: Job, exchange: _Exchange) -> JobOutcome:
        where = f"the process of job {job.id} (pid {exchange.pid}) on executor {self.id}"
        reply = _decode(exchange.reply)
        if reply is None:
            if self.state is ExecutorState.CLOSED:
                return JobOutcome.failure(job.id, FailureReason.KILLED)
            detail = f"{where} exited without replying: {describe_exit(exchange.returncode)}"
            return JobOutcome.failure(
                job.id, FailureReason.CRASHED, RemoteError.from_exception(OneshotError(detail))
            )
        if reply[0] == "value":
            try:
                value = pickle.loads(reply[1])
            except Exception as exc:
                problem = pickle.UnpicklingError(
                    f"the result of job {job.id} cannot be unpickled in the host: "
                    f"{type(exc).__name__}: {exc}"
                )
                return JobOutcome.failure(
                    job.id, FailureReason.RAISED, RemoteError.from_exception(problem)
                )
            return JobOutcome.success(job.id, value)
        return JobOutcome.failure(job.id, FailureReason.RAISED, _remote_error(reply[1:], where))

    def _command_text(self) -> str:
        return " ".join(self._spec.command)


async def _read_frame(stream: ByteReceiveStream) -> bytes | None:
    """The one frame the process writes; None when its stdout closed before a whole
    frame arrived (it crashed or was killed)."""
    data = bytearray()
    async for chunk in stream:
        data += chunk
        if len(data) >= HEADER.size:
            end = HEADER.size + HEADER.unpack_from(data)[0]
            if len(data) >= end:
                return bytes(data[HEADER.size : end])
    return None


def _decode(data: bytes | None) -> Reply | None:
    if data is None:
        return None
    reply: Reply = pickle.loads(data)  # plain values only: see _protocol
    return reply


def _remote_error(fields: Reply, where: str) -> RemoteError:
    """The process's exception, with its traceback as a note; a OneshotError naming
    it when it does not unpickle here."""
    type_name, message, text, pickled = fields
    error = RemoteError(type_name, message, text)
    exc: object = None
    if pickled is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(pickled)
    if not isinstance(exc, BaseException):
        exc = OneshotError(f"{type_name}: {message}" if message else type_name, error)
    exc.add_note(f"raised in {where}; remote traceback:\n{text.rstrip()}")
    return attrs.evolve(error, exception=exc)


def _kill(process: Process) -> None:
    """SIGKILL the process and its group at once. Never raises."""
    if process.returncode is not None:
        return  # already reaped: its pid may belong to another process by now
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


@attrs.frozen
class _Factory:
    spec: _Spec

    def create_executor(self, executor_id: str) -> OneshotExecutor:
        return OneshotExecutor(executor_id, self.spec)


@attrs.frozen
class OneshotBackend:
    """Backend ``oneshot``: every job runs in a fresh Python process of its own."""

    name: str = "oneshot"
    capabilities: Capabilities = _CAPABILITIES
    options: type = OneshotOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert isinstance(options, OneshotOptions)
        assert config.entrypoint is not None, "the pool checks the entrypoint before open()"
        spec = _Spec(
            command=(options.python or sys.executable, "-m", RUNNER),
            entrypoint=config.entrypoint,
            setup=config.setup,
            sys_path=tuple(sys.path) if options.inherit_sys_path else None,
        )
        # Nothing is shared between executors: every process is started, and reaped, by
        # the executor that needs it.
        yield _Factory(spec)
