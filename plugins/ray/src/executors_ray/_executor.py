"""The host side of one executor: a Ray actor, driven from the pool's event loop.

Every call to the actor is an ``ObjectRef``; the host waits for one through
``ObjectRef.future()``, whose callback (on a thread of Ray's) wakes the waiting task on
the event loop. So the same code serves asyncio and trio hosts, with no thread per wait.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs
import sniffio

from executors import (
    ExecutorsError,
    ExecutorState,
    FailureReason,
    Health,
    JobOutcome,
    LaunchError,
    RemoteError,
)
from executors.backend import event_class, loop_clock, not_ready

from ._actor import CONCURRENCY, ExecutorActor, dumps, first_line
from ._graph import JobGraph, Unsent

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from anyio.abc import TaskGroup

    from executors import Job, PoolConfig

    from ._backend import RayOptions

logger = logging.getLogger("executors.ray")

_READY, _BUSY, _CLOSED = ExecutorState.READY, ExecutorState.BUSY, ExecutorState.CLOSED
_MIB = 1024 * 1024
#: seconds an actor has to end its own process before ray.kill() ends it
_END_WAIT = 1.0


class RayExecutorError(ExecutorsError, RuntimeError):
    """Raised by ``start()`` when the actor could not be created or died while starting,
    and in place of a setup's exception that could not cross from the actor."""


@attrs.frozen
class ActorSpec:
    """What every actor of one pool needs; built once by the backend."""

    config: PoolConfig
    options: RayOptions
    task_group: TaskGroup = attrs.field(repr=False)
    #: the actor class with this pool's options applied (resources, runtime_env...)
    actor_class: Any = attrs.field(repr=False)
    #: what each actor asks the cluster for, as messages name it
    asks: str = ""

    @classmethod
    def of(
        cls, config: PoolConfig, options: RayOptions, task_group: TaskGroup, num_cpus: float
    ) -> ActorSpec:
        import ray

        settings: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": options.num_gpus,
            "max_concurrency": CONCURRENCY,
            # the pool replaces a dead executor; Ray must not restart it behind its back
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        if options.resources:
            settings["resources"] = dict(options.resources)
        if options.runtime_env is not None:
            settings["runtime_env"] = dict(options.runtime_env)
        actor_class = ray.remote(ExecutorActor).options(**settings)
        asks = ", ".join(
            [f"num_cpus={num_cpus:g}", f"num_gpus={options.num_gpus:g}"]
            + [f"{name}={amount:g}" for name, amount in options.resources.items()]
        )
        return cls(config, options, task_group, actor_class, asks)


def _poster() -> Callable[[Callable[[], object]], object]:
    """Schedules a callback on the running event loop from any thread."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


class RayExecutor:
    """One executor of the ray backend: one Ray actor (a process on some node)."""

    def __init__(self, executor_id: str, spec: ActorSpec) -> None:
        self.id = executor_id
        self.state = ExecutorState.STARTING
        #: the actor's process id and node, once it is set up (for messages only)
        self.pid: int | None = None
        self.node: str | None = None
        self._spec = spec
        self._actor: Any = None
        self._exited: anyio.Event | None = None
        self._killed = False
        #: kill() has ended the actor (ray.kill), or there was none to end
        self._ended = False
        #: Ray has placed the actor on a node and made it (set from a thread of Ray's)
        self._placed = False
        #: the wait of the running job, which kill() ends at once
        self._wake: anyio.Event | None = None
        self._post: Callable[[Callable[[], object]], object] | None = None
        self._clock: Callable[[], float] | None = None
        self._event: Callable[[], anyio.Event] | None = None
        self._ping_sent: float | None = None
        self._last_rtt: float | None = None
        self._memory: float | None = None
        #: the actor's compiled graph: compiled as the actor sets up, closed with it
        self._compiling: JobGraph | None = None
        #: the compiled graph the jobs go through, once the actor is set up
        self._graph: JobGraph | None = None
        #: why the watch woke the job running through the graph: Ray's error that told
        #: it the actor died, or cannot be reached
        self._loss: Exception | None = None

    # -- the contract ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.state is not ExecutorState.STARTING:
            msg = f"executor {self.id} cannot start: it is {self.state.value}"
            raise RayExecutorError(msg)
        self._post, self._clock, self._event = _poster(), loop_clock(), event_class()
        self._exited = self._event()
        config = self._spec.config
        try:
            self._actor = self._spec.actor_class.remote(
                self.id, config.entrypoint, config.setup, logging.getLogger().level
            )
        except Exception as exc:
            self.state = _CLOSED
            self._exited.set()
            msg = f"{self._where()}: Ray could not create its actor: {type(exc).__name__}: {exc}"
            raise RayExecutorError(msg) from exc
        logger.debug("%s: actor created", self._where())
        self._actor.__ray_ready__.remote().future().add_done_callback(self._made)
        self._spec.task_group.start_soon(self._watch, name=f"executors-ray-watch-{self.id}")
        if self._spec.options.compiled_graphs:
            # compiled by its thread while the actor sets up
            self._compiling = JobGraph(self._actor, f"executors-ray-graph-{self.id}")
            self._compiling.start()
        try:
            ok, value = await self._get(self._actor.setup.remote())
        except BaseException as exc:
            if not self._placed:
                logger.warning(
                    "%s: its start ended before Ray placed its actor on a node; no node "
                    "may have what it asks for free (%s): `ray status` shows what the "
                    "cluster has",
                    self._where(),
                    self._spec.asks,
                )
            with anyio.CancelScope(shield=True):
                await self.kill()
            if isinstance(exc, Exception) and _is_ray_error(exc):
                msg = f"{self._where()} died while it started: {first_line(exc)}"
                raise RayExecutorError(msg) from exc
            raise
        if not ok:
            await self.kill()
            raise _exception_of(value, f"the setup on {self._where()}")
        self.pid, self.node, rss = value
        logger.debug("%s is set up", self._where())
        self._memory = rss / _MIB
        if self._compiling is not None:
            await self._compiled(self._compiling)
        if self.state is ExecutorState.STARTING:
            self.state = _READY
            self._spec.task_group.start_soon(self._ping, name=f"executors-ray-ping-{self.id}")

    async def run_job(self, job: Job) -> JobOutcome:
        if self.state is not _READY:
            raise not_ready(self.id, job.id, self.state)
        try:
            sent = self._send(job)
        except Exception as exc:
            # The arguments did not serialize: nothing was sent, the actor stays READY.
            await anyio.lowlevel.checkpoint()
            return _unsendable(job, exc)
        self.state = _BUSY
        try:
            reply = await self._wait(sent, wakeable=True)
        except Unsent as exc:
            # Ray tore the graph down (it found the actor dead): nothing was sent
            self.state = _CLOSED
            msg = (
                f"{self._where()} cannot take job {job.id}: its compiled graph is gone "
                f"({first_line(exc.cause)})"
            )
            raise LaunchError(msg) from exc.cause
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # Cancelled (timeout, cancel, drain): a job halfway through in the actor
                # cannot be stopped but by ending the actor; the pool replaces it.
                with anyio.CancelScope(shield=True):
                    await self.kill()
                raise
            if self._killed:  # the call failed as kill() ended the actor
                return await self._killed_run(job)
            if _is_ray_error(exc):
                return self._failed(job, exc)
            # a graph broke mid-job another way: how far the job got is unknown
            self.state = _CLOSED
            return self._lost(job, "was lost running", exc)
        if reply is _WOKEN:
            if self._killed:
                return await self._killed_run(job)
            # the watch woke a job running through the graph: the actor died, or is lost
            assert self._loss is not None
            return self._failed(job, self._loss)
        if self.state is _BUSY:
            # the actor may have died just after it answered
            self.state = _CLOSED if self._exited is not None and self._exited.is_set() else _READY
        ok, value = reply if self._graph is None else self._unpacked(job, reply)
        if ok:
            return JobOutcome.success(job.id, value)
        return JobOutcome.failure(job.id, FailureReason.RAISED, value)

    def _send(self, job: Job) -> Future[Any]:
        """Sends ``job`` to the actor: through its compiled graph (the arguments pickled
        here), or as a plain call. Raises where the arguments do not serialize."""
        arguments = (job.id, job.payload, dict(job.metadata))
        if self._graph is not None:
            return self._graph.send(dumps(arguments))
        future: Future[Any] = self._actor.run.remote(*arguments).future()
        return future

    async def aclose(self) -> None:
        if self.state is _CLOSED or self._exited is None or self._exited.is_set():
            await self.kill()
            return
        self.state = ExecutorState.CLOSING
        if self._compiling is not None:
            # The actor is idle: its graph ends at once (a round trip to it), before the
            # actor does, which would make Ray's teardown log an error.
            with anyio.move_on_after(self._spec.config.close_timeout / 2):
                await self._wait(self._compiling.close())
        # The actor tidies up (its jobs' event loop), then goes as Ray ends an actor for
        # good: ray.kill(). Not __ray_terminate__: a threaded actor's process can hang
        # at its exit after Ray has reported it dead, and live on unseen.
        with anyio.move_on_after(self._spec.config.close_timeout / 2):
            try:
                await self._get(self._actor.stop.remote())
            except Exception as exc:
                if _is_ray_error(exc):
                    self._gone()
                else:
                    logger.warning("%s did not stop gracefully: %s", self._where(), exc)
        await self.kill()

    async def kill(self) -> None:
        logger.debug("killing %s (%s)", self._where(), self.state.value)
        self._killed = True
        # code may be running in the actor: a job, or the setup
        running = self.state in (_BUSY, ExecutorState.STARTING)
        self.state = _CLOSED
        if self._wake is not None:
            self._wake.set()
        ended, self._ended = self._ended, True
        if self._compiling is not None:
            # its thread tears it down once the job it waits on ends, with the actor
            self._compiling.close()
        if ended or self._actor is None or self._exited is None or self._exited.is_set():
            await anyio.lowlevel.checkpoint()
            return
        # Ray reports an actor that ray.kill() ended dead before its process is gone:
        # its job's code could run on a moment. So an actor that runs code first ends
        # its own process (then the report means the code has stopped); ray.kill() ends
        # one that cannot (wedged, or never placed), and makes sure Ray never restarts it.
        timeout = self._spec.config.close_timeout
        if running:
            with contextlib.suppress(Exception):
                self._actor.end.remote()
            with anyio.move_on_after(min(_END_WAIT, timeout / 2)):
                await self._exited.wait()
        try:
            import ray

            ray.kill(self._actor, no_restart=True)
        except Exception as exc:
            logger.debug("ray.kill(%s): %s", self._where(), exc)
        with anyio.move_on_after(timeout) as waited:
            await self._exited.wait()
        if waited.cancelled_caught:
            logger.warning(
                "%s: Ray did not report it dead within close_timeout (%ss) of ray.kill()",
                self._where(),
                timeout,
            )

    async def wait_exited(self) -> None:
        if self._exited is None:
            return
        await self._exited.wait()

    def health(self) -> Health:
        alive = self._actor is not None and self._exited is not None and not self._exited.is_set()
        return Health(alive=alive, memory_mb=self._memory, ping_latency=self._ping_latency())

    async def _killed_run(self, job: Job) -> JobOutcome:
        """The outcome of a run that kill() ended, once Ray reports the actor dead
        (kill() makes sure it is, within close_timeout): no job code runs after it."""
        assert self._exited is not None
        with anyio.move_on_after(self._spec.config.close_timeout):
            await self._exited.wait()
        detail = f"{self._where()} was killed while it ran job {job.id}"
        error = RemoteError("executors_ray.ActorKilled", detail, "")
        return JobOutcome.failure(job.id, FailureReason.KILLED, error)

    def _made(self, future: object) -> None:
        self._placed = True

    # -- the compiled graph ------------------------------------------------------------

    async def _compiled(self, graph: JobGraph) -> None:
        """Waits for the actor's graph; raises :class:`RayExecutorError` where Ray could
        not compile it, or the actor died meanwhile."""
        try:
            await self._wait(graph.compiled)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self.kill()
            if not isinstance(exc, Exception):
                raise
            if _is_ray_error(exc) and isinstance(exc, _actor_error()):
                msg = f"{self._where()} died while it started: {first_line(exc)}"
            else:
                msg = (
                    f"{self._where()}: Ray could not compile its graph (compiled_graphs = "
                    f"true; false sends the jobs as plain actor calls): "
                    f"{type(exc).__name__}: {first_line(exc)}"
                )
            raise RayExecutorError(msg) from exc
        self._graph = graph

    def _unpacked(self, job: Job, data: bytes) -> tuple[bool, Any]:
        """A graph's reply, ``(ok, value)``: its failure to (de)serialize the job's."""
        try:
            ok, value = pickle.loads(data)
        except Exception as exc:
            problem: pickle.PickleError = pickle.UnpicklingError(
                f"the result of job {job.id} from {self._where()} cannot be deserialized "
                f"here: {type(exc).__name__}: {first_line(exc)}"
            )
            return False, RemoteError.from_exception(problem)
        if ok is None:
            problem = pickle.PicklingError(
                f"the result of job {job.id} on {self._where()} cannot be serialized: {value}"
            )
            return False, RemoteError.from_exception(problem)
        return ok, value

    def _woken_by_watch(self, exc: Exception) -> None:
        """The watch learnt the actor died, or cannot be reached: a job running through
        the graph would never hear of it from its own reply."""
        if self._graph is not None and self._wake is not None and self.state is _BUSY:
            self._loss = exc
            self._wake.set()

    # -- waiting on Ray --------------------------------------------------------------------

    async def _get(self, ref: Any) -> Any:
        """The value of ``ref`` (Ray's exception raised where the call failed)."""
        return await self._wait(ref.future())

    async def _wait(self, future: Future[Any], *, wakeable: bool = False) -> Any:
        """The value of ``future``, done on another thread (Ray's, or a graph's); with
        ``wakeable``, ``_WOKEN`` if kill() or the watch ended the wait first."""
        if future.done():
            await anyio.lowlevel.checkpoint()
        else:
            assert self._event is not None
            assert self._post is not None
            done, post = self._event(), self._post

            def wake(_: object) -> None:
                try:  # noqa: SIM105 -- the loop may be gone with its pool
                    post(done.set)
                except Exception:
                    pass

            future.add_done_callback(wake)
            if wakeable:
                self._wake = done
            try:
                await done.wait()
            finally:
                if wakeable:
                    self._wake = None
            if not future.done():
                return _WOKEN
        return future.result()

    async def _watch(self) -> None:
        """Learns of the actor's death (a SIGKILL, a crash, its node gone) as Ray reports
        it: the call that never returns fails. An idle executor is then replaced at
        once, and kill() knows the actor's code has stopped. An actor Ray cannot reach
        for now (its node's connection dropped) is not dead yet: the watch goes on, and
        pings find it unresponsive meanwhile."""
        while True:
            try:
                await self._get(self._actor.watch.remote())
            except Exception as exc:
                if _unreachable(exc):
                    self._woken_by_watch(exc)
                    await anyio.sleep(self._spec.config.ping_interval)
                    continue
                if _is_ray_error(exc):
                    self._woken_by_watch(exc)
                    self._gone()
            return

    def _gone(self) -> None:
        """Ray reported the actor dead."""
        logger.debug("%s: Ray reports it dead", self._where())
        if self.state is not _BUSY:  # a running job learns it from its own call
            self.state = _CLOSED
        assert self._exited is not None
        self._exited.set()

    async def _ping(self) -> None:
        """Every ``ping_interval``, one ping: it answers with the actor's memory."""
        assert self._clock is not None
        assert self._exited is not None
        interval = self._spec.config.ping_interval
        while not self._exited.is_set():
            await anyio.sleep(interval)
            if self._exited.is_set() or self.state is ExecutorState.CLOSING:
                return
            self._ping_sent = sent = self._clock()
            try:
                rss = await self._get(self._actor.ping.remote())
            except Exception:
                return  # the actor is gone: the watch says so
            self._ping_sent = None
            self._last_rtt = self._clock() - sent
            self._memory = rss / _MIB

    def _ping_latency(self) -> float | None:
        if self._ping_sent is not None and self._clock is not None:
            return self._clock() - self._ping_sent
        return self._last_rtt

    # -- outcomes --------------------------------------------------------------------------

    def _failed(self, job: Job, exc: Exception) -> JobOutcome:
        import ray.exceptions

        if isinstance(exc, ray.exceptions.RayTaskError):
            # The actor lives on: its run() returned, but its result did not serialize.
            if self.state is _BUSY:
                self.state = _READY
            problem = pickle.PicklingError(
                f"the result of job {job.id} on {self._where()} cannot be serialized: "
                f"{_cause_line(exc)}"
            )
            error = RemoteError.from_exception(problem)
            return JobOutcome.failure(job.id, FailureReason.RAISED, error)
        if isinstance(exc, ray.exceptions.RayActorError) and not _unreachable(exc):
            self._gone()
            what = "died running"
        else:
            # Unreachable (its node's connection dropped), or the call was lost another
            # way: how far the job got is unknown. The pool closes the executor (which
            # ends the actor, should it still be there) and runs the job nowhere else.
            what = "was lost running"
        self.state = _CLOSED
        return self._lost(job, what, exc)

    def _lost(self, job: Job, what: str, exc: Exception) -> JobOutcome:
        detail = f"{self._where()} {what} job {job.id}: {first_line(exc)}"
        error = RemoteError(f"executors_ray.{type(exc).__name__}", detail, str(exc))
        return JobOutcome.failure(job.id, FailureReason.CRASHED, error)

    def _where(self) -> str:
        if self.pid is None:
            return f"executor {self.id} (Ray actor, not set up)"
        return f"executor {self.id} (Ray actor, pid {self.pid} on node {self.node})"


#: what a wakeable wait returns when kill() or the watch ended it
_WOKEN: Any = object()


def _unsendable(job: Job, exc: Exception) -> JobOutcome:
    """The outcome of a job whose payload did not serialize: nothing was sent, and the
    executor stays READY."""
    problem = pickle.PicklingError(
        f"the payload of job {job.id} cannot be serialized: {type(exc).__name__}: {first_line(exc)}"
    )
    return JobOutcome.failure(job.id, FailureReason.RAISED, RemoteError.from_exception(problem))


def _unreachable(exc: Exception) -> bool:
    """Ray cannot reach the actor for now: not (yet) known to be dead."""
    import ray.exceptions

    return isinstance(exc, ray.exceptions.ActorUnavailableError)


def _actor_error() -> type[Exception]:
    import ray.exceptions

    return ray.exceptions.RayActorError


def _is_ray_error(exc: Exception) -> bool:
    import ray.exceptions

    return isinstance(exc, ray.exceptions.RayError)


def _cause_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {first_line(cause)}"
    return first_line(exc)


def _exception_of(error: RemoteError, where: str) -> BaseException:
    """The setup's own exception where it crossed, with its remote traceback as a note;
    else a RayExecutorError with its type, message and traceback."""
    if error.exception is not None:
        exc = error.exception
        exc.add_note(f"raised by {where}; its traceback there:\n{error.traceback}")
        return exc
    return RayExecutorError(f"{where} raised {error}\n{error.traceback}")
