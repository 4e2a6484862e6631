"""What runs inside each executor's Ray actor. The actor is threaded (``max_concurrency``
of 5): one thread runs the job, and the others answer pings, hold the host's death watch
and take the stop and the end at once, even while a sync job holds its thread."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any

import attrs
import psutil

from executors import JobContext, RemoteError, resolve_callable

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: the concurrency the actor is created with: a job, a ping, the watch, the stop and
#: the end
CONCURRENCY = 5


def carried(exc: BaseException) -> RemoteError:
    """``exc`` as a :class:`RemoteError` that crosses to the host: with the exception
    itself where it pickles (and unpickles), else its type, message and traceback only."""
    remote = RemoteError.from_exception(exc)
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return attrs.evolve(remote, exception=None)
    return remote


class ExecutorActor:
    """One executor: the setup's state, and the jobs run against it one at a time."""

    def __init__(
        self, executor_id: str, entrypoint: str | Callable[..., Any], setup: Any, log_level: int
    ) -> None:
        self._executor_id = executor_id
        self._entrypoint_ref = entrypoint
        self._setup_ref = setup
        self._log_level = log_level
        self._entrypoint: Callable[..., Any] | None = None
        self._state: object = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process = psutil.Process()

    def setup(self) -> tuple[bool, Any]:
        """Resolve the entrypoint and run the setup: ``(True, (pid, node, memory))``, or
        ``(False, error)`` with the setup's own exception."""
        root = logging.getLogger()
        if root.level != self._log_level:
            root.setLevel(self._log_level)
        try:
            self._entrypoint = resolve_callable(self._entrypoint_ref)
            if self._setup_ref is not None:
                self._state = self._call(resolve_callable(self._setup_ref, what="setup"))
        except BaseException as exc:
            return False, carried(exc)
        import ray

        node = ray.get_runtime_context().get_node_id()[:12]
        return True, (os.getpid(), node, self.ping())

    def run(self, job_id: str, payload: Any, metadata: Mapping[str, str]) -> tuple[bool, Any]:
        """One job: ``(True, value)``, or ``(False, error)`` for whatever it raised."""
        assert self._entrypoint is not None, "a job before the setup"
        ctx = JobContext(
            payload=payload,
            job_id=job_id,
            executor_id=self._executor_id,
            state=self._state,
            metadata=metadata,
        )
        try:
            return True, self._call(self._entrypoint, ctx)
        except BaseException as exc:
            # SystemExit, GeneratorExit...: the job's failure, not the actor's
            return False, carried(exc)

    def run_packed(self, data: bytes) -> bytes:
        """One job sent through the executor's compiled graph: its arguments come, and
        its reply goes, as pickled bytes. Whatever does not (de)serialize is then this
        job's failure, told in its reply: the graph itself carries bytes only, and one
        value it could not write would break it for every later job."""
        try:
            job_id, payload, metadata = pickle.loads(data)
        except BaseException as exc:
            problem = pickle.UnpicklingError(
                f"a job's payload cannot be deserialized in the actor: "
                f"{type(exc).__name__}: {first_line(exc)}"
            )
            return dumps((False, carried(problem)))
        reply = self.run(job_id, payload, metadata)
        try:
            return dumps(reply)
        except Exception as exc:
            return dumps((None, f"{type(exc).__name__}: {first_line(exc)}"))

    def ping(self) -> int:
        """The actor's resident memory in bytes, read as it answers."""
        try:
            return int(self._process.memory_info().rss)
        except psutil.Error:
            return 0

    def watch(self) -> None:
        """Never returns: the host learns of the actor's death by this call failing."""
        threading.Event().wait()

    def stop(self) -> None:
        """Tidy up before the host ends the actor."""
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
            self._loop = None

    def end(self) -> None:
        """Exit the process now, whatever its job is doing: the host learns the actor
        died only once its process is gone, so no job code runs after that."""
        os._exit(70)

    def _call(self, function: Callable[..., Any], *args: object) -> object:
        value = function(*args)
        if inspect.isawaitable(value):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(_awaited(value))
        return value


def dumps(value: object) -> bytes:
    """``value`` pickled as Ray pickles a call's arguments (functions and classes
    defined in ``__main__`` or locally too)."""
    from ray import cloudpickle

    data: bytes = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-untyped-call]
    return data


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _awaited(awaitable: Any) -> object:
    return await awaitable
