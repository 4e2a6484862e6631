from __future__ import annotations

import collections
import inspect
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
import attrs

from .._entrypoints import resolve_callable
from .._exceptions import LaunchError
from .._executor import Capabilities, ExecutorFactory, ExecutorState, Health
from .._job import FailureReason, Job, JobContext, JobOutcome, RemoteError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from .._config import PoolConfig

Action = Literal["succeed", "fail", "hang", "crash", "refuse"]


class SimulatedError(RuntimeError):
    """What a scripted spawn or job raises when its script says ``fail``."""


@attrs.frozen
class Script:
    """What one spawn or one job does: wait ``seconds``, then ``action``.

    As a job payload: ``succeed`` returns ``value``; ``fail`` raises
    :class:`SimulatedError`; ``hang`` waits until cancelled; ``crash`` ends the job with
    reason CRASHED and kills its executor; ``refuse`` raises :class:`LaunchError` before
    accepting. As a spawn step: ``succeed`` starts, ``fail``/``crash``/``refuse`` raise,
    ``hang`` never finishes starting.
    """

    action: Action = "succeed"
    seconds: float = 0.0
    value: object = None
    message: str = "scripted failure"
    #: while this job runs, the executor's health reports this much memory (MiB)
    memory_mb: float | None = None
    #: while this job runs, the executor stops answering pings
    unresponsive: bool = False

    @classmethod
    def succeed(
        cls, value: object = None, seconds: float = 0.0, memory_mb: float | None = None
    ) -> Script:
        return cls("succeed", seconds, value, memory_mb=memory_mb)

    @classmethod
    def fail(cls, message: str = "scripted failure", seconds: float = 0.0) -> Script:
        return cls("fail", seconds, message=message)

    @classmethod
    def hang(cls, *, unresponsive: bool = False) -> Script:
        return cls("hang", unresponsive=unresponsive)

    @classmethod
    def crash(cls, seconds: float = 0.0) -> Script:
        return cls("crash", seconds)

    @classmethod
    def refuse(cls) -> Script:
        return cls("refuse")


_CAPABILITIES = Capabilities(
    isolates_crashes=True,
    can_kill_running_job=True,
    measures_memory=True,  # the memory_mb its scripts declare
    sync_entrypoints=True,
    async_entrypoints=True,
)


@attrs.define(eq=False)
class SimulatedExecutor:
    id: str
    _backend: SimulatedBackend = attrs.field(repr=False)
    state: ExecutorState = ExecutorState.STARTING
    _setup_state: object = attrs.field(init=False, default=None, repr=False)
    _scope: anyio.CancelScope | None = attrs.field(init=False, default=None, repr=False)
    # The script of the running job and when it began, for health().
    _script: Script | None = attrs.field(init=False, default=None, repr=False)
    _since: float = attrs.field(init=False, default=0.0, repr=False)

    async def start(self) -> None:
        backend = self._backend
        backend._starting += 1
        backend.peak_starting = max(backend.peak_starting, backend._starting)
        try:
            await _perform_spawn(backend._next_spawn())
            if backend._setup is not None:
                state = backend._setup()
                self._setup_state = await state if inspect.isawaitable(state) else state
        finally:
            backend._starting -= 1
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not ExecutorState.READY:
            msg = f"simulated executor {self.id} is {self.state.value}"
            raise LaunchError(msg)
        if isinstance(job.payload, Script) and job.payload.action == "refuse":
            self.state = ExecutorState.CLOSED
            msg = f"simulated executor {self.id} refused job {job.id}"
            raise LaunchError(msg)
        self.state = ExecutorState.BUSY
        self._backend.runs[job.id] += 1
        scope = self._scope = anyio.CancelScope()
        if isinstance(job.payload, Script):
            self._script, self._since = job.payload, anyio.current_time()
        try:
            with scope:
                return await self._run(job, scope)
            return JobOutcome.failure(job.id, FailureReason.KILLED)
        finally:
            self._scope = self._script = None
            if self.state is ExecutorState.BUSY:
                self.state = ExecutorState.READY

    async def _run(self, job: Job, scope: anyio.CancelScope) -> JobOutcome:
        script = job.payload
        try:
            if not isinstance(script, Script):
                ctx = JobContext(
                    payload=script,
                    job_id=job.id,
                    executor_id=self.id,
                    state=self._setup_state,
                    metadata=job.metadata,
                    cancel_check=lambda: scope.cancel_called,
                )
                value = self._backend._entrypoint(ctx)
                value = await value if inspect.isawaitable(value) else value
                await anyio.lowlevel.checkpoint()
                return JobOutcome.success(job.id, value)
            await anyio.sleep(script.seconds)
            if script.action == "hang":
                await anyio.sleep_forever()
            if script.action == "fail":
                raise SimulatedError(script.message)
        except Exception as exc:
            return JobOutcome.failure(job.id, FailureReason.RAISED, RemoteError.from_exception(exc))
        if script.action == "crash":
            self.state = ExecutorState.CLOSED
            self._backend._closed(self)
            return JobOutcome.failure(job.id, FailureReason.CRASHED)
        return JobOutcome.success(job.id, script.value)

    async def aclose(self) -> None:
        await self.kill()

    async def kill(self) -> None:
        self.state = ExecutorState.CLOSED
        if self._scope is not None:
            self._scope.cancel()
        self._backend._closed(self)

    def health(self) -> Health:
        script = self._script
        if script is None:
            return Health(alive=self.state is not ExecutorState.CLOSED, ping_latency=0.0)
        silent = anyio.current_time() - self._since if script.unresponsive else 0.0
        return Health(alive=True, memory_mb=script.memory_mb, ping_latency=silent)


async def _perform_spawn(step: Script) -> None:
    await anyio.sleep(step.seconds)
    if step.action == "hang":
        await anyio.sleep_forever()
    if step.action != "succeed":
        raise SimulatedError(step.message)


@attrs.define(eq=False)
class SimulatedBackend:
    """An in-memory backend that follows a script, and records what happened.

    ``spawns`` scripts the executor starts in order; once it runs out, every start
    follows ``then``. Jobs whose payload is a :class:`Script` follow it; other payloads
    go to the configured entrypoint. Records: ``live`` (executors created and not yet
    closed), ``peak_live``, ``peak_starting``, ``runs`` (how often each job id ran).
    """

    spawns: Iterable[Script] = ()
    then: Script = attrs.field(factory=Script)
    name: str = "simulated"
    capabilities: Capabilities = _CAPABILITIES
    options: type = attrs.field(default=attrs.make_class("SimulatedOptions", {}, frozen=True))
    live: set[str] = attrs.field(init=False, factory=set)
    peak_live: int = attrs.field(init=False, default=0)
    peak_starting: int = attrs.field(init=False, default=0)
    runs: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _queue: collections.deque[Script] = attrs.field(init=False)
    _starting: int = attrs.field(init=False, default=0)
    _entrypoint: Callable[[JobContext], Any] = attrs.field(init=False, default=None)
    _setup: Callable[[], object] | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self._queue = collections.deque(self.spawns)

    def _next_spawn(self) -> Script:
        return self._queue.popleft() if self._queue else self.then

    def _closed(self, executor: SimulatedExecutor) -> None:
        self.live.discard(executor.id)

    def create_executor(self, executor_id: str) -> SimulatedExecutor:
        self.live.add(executor_id)
        self.peak_live = max(self.peak_live, len(self.live))
        return SimulatedExecutor(executor_id, self)

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert config.entrypoint is not None
        self._entrypoint = resolve_callable(config.entrypoint)
        self._setup = resolve_callable(config.setup, what="setup") if config.setup else None
        yield self
