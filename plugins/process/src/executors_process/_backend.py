from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal, cast

import anyio
import attrs

from executors import Capabilities, ConfigError, EntrypointError, resolve_callable

from . import _worker
from ._executor import ProcessExecutor, WorkerSpec
from ._server import ServerContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from executors import ExecutorFactory, PoolConfig

    from ._executor import WorkerContext

StartMethod = Literal["auto", "forkserver", "spawn"]

_CAPABILITIES = Capabilities(
    isolates_crashes=True,
    can_kill_running_job=True,
    measures_memory=True,
    sync_entrypoints=True,
    async_entrypoints=True,
    reusable=True,
    remote=False,
    setup_per_pool=False,
)


#: the most keep_freed_mb may be: malloc takes it in bytes, as a C int
MAX_KEEP_FREED_MB = 2047


@attrs.frozen(kw_only=True)
class ProcessOptions:
    """Options of the process backend (``[tool.executors.process]``)."""

    #: "forkserver" (Linux: workers fork from a server that preloaded the entrypoint's
    #: and setup's modules), "spawn" (a fresh interpreter per worker), or "auto":
    #: forkserver where available, spawn elsewhere. Chosen per pool; the global
    #: multiprocessing start method is never changed.
    start_method: StartMethod = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "forkserver", "spawn"))
    )
    #: log a warning when a worker takes longer than this (seconds) to answer a ping
    high_ping_threshold: float = attrs.field(default=0.5, validator=attrs.validators.gt(0.0))
    #: after a job, recycle a worker whose memory is over this (MiB); none: never
    recycle_memory_mb: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    #: MiB of freed memory a worker keeps for reuse, large blocks included (glibc's
    #: malloc; ignored elsewhere): a large payload then lands in memory already mapped,
    #: with no page faults. 0 leaves malloc as it is.
    keep_freed_mb: int = attrs.field(
        default=256,
        validator=[
            attrs.validators.instance_of(int),
            attrs.validators.ge(0),
            attrs.validators.le(MAX_KEEP_FREED_MB),
        ],
    )


class NestedPoolError(ConfigError):
    """Raised when a process pool is opened inside a worker of a process pool."""


def _refuse_nesting(config: PoolConfig) -> None:
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker runs the main module again (a spawned one as it starts, a forked one
        # when a job needs a name from it; see _forkserver): a script that opens its
        # pool at import would otherwise open one in each.
        msg = (
            f"open_pool() called while a new worker process imports the main module "
            f"(pid {os.getpid()}), for entrypoint {config.entrypoint!r}: put the code "
            "that opens the pool under `if __name__ == '__main__':`"
        )
        raise NestedPoolError(msg)
    executor_id = _worker.CURRENT_EXECUTOR
    if executor_id is None:
        return
    msg = (
        f"open_pool() called inside worker {executor_id} (pid {os.getpid()}) of a process "
        f"pool, for entrypoint {config.entrypoint!r}: nested process pools are refused; "
        "run the inner jobs in the outer pool, or use the thread or coroutine backend "
        "inside a worker"
    )
    raise NestedPoolError(msg)


def _check_sendable(ref: str | Callable[..., object] | None, what: str) -> None:
    """An entrypoint or setup given as an object travels to each worker by reference
    (its module and name, which the worker imports): one that cannot is refused before
    any worker starts, rather than failing every start."""
    if ref is None or isinstance(ref, str):
        return
    try:
        pickle.dumps(ref, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        name = f"{getattr(ref, '__module__', '?')}:{getattr(ref, '__qualname__', repr(ref))}"
        msg = (
            f"{what} {name!r} cannot be sent to a worker process, which imports it by "
            f"name ({type(exc).__name__}: {exc}): define it at the top level of a module "
            "(not a lambda or a nested function), or name it as "
            "'module:function'"
        )
        raise EntrypointError(msg) from exc


def resolve_start_method(method: StartMethod) -> str:
    if method != "auto":
        return method
    available = multiprocessing.get_all_start_methods()
    return (
        "forkserver"
        if sys.platform.startswith("linux") and "forkserver" in available
        else ("spawn")
    )


def _modules_of(*references: object) -> list[str]:
    return [ref.partition(":")[0] for ref in references if isinstance(ref, str)]


def _is_async(reference: str | Callable[..., object] | None) -> bool:
    """Whether the entrypoint or setup ``reference`` is an ``async def`` (or an object
    whose ``__call__`` is); False for one that does not resolve here (the pool says so)."""
    if reference is None:
        return False
    try:
        function = resolve_callable(reference)
    except Exception:
        return False
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 -- the method itself is inspected
    )


#: "forkserver" is the backend's own server on Linux, multiprocessing's elsewhere
OWN_FORK_SERVER: bool = sys.platform.startswith("linux")


def _context(config: PoolConfig, options: ProcessOptions) -> WorkerContext:
    method = resolve_start_method(options.start_method)
    if method != "forkserver":
        return cast("WorkerContext", multiprocessing.get_context(method))
    modules = _modules_of(config.entrypoint, config.setup)
    if OWN_FORK_SERVER:
        # The backend's own server (see _server): it imports each pool's modules once,
        # and asyncio for a pool that needs it (a worker of `def` jobs never does, and
        # the server keeps out what every fork would copy the page tables of).
        if any(_is_async(ref) for ref in (config.entrypoint, config.setup)):
            modules.insert(0, "asyncio")
        return ServerContext(["executors_process._worker", *modules])
    # Elsewhere, multiprocessing's forkserver. It is shared by every pool of this
    # interpreter, so the first pool's preload list wins. _forkserver keeps the server
    # alive through a SIGTERM sent to the whole group.
    context = multiprocessing.get_context("forkserver")
    preload = ["executors_process._forkserver", "executors_process._worker", *modules]
    context.set_forkserver_preload(preload)
    return context


@attrs.define(eq=False)
class _Factory:
    spec: WorkerSpec

    def create_executor(self, executor_id: str) -> ProcessExecutor:
        return ProcessExecutor(executor_id, self.spec)


@attrs.frozen
class ProcessBackend:
    """Backend ``process``: one supervised OS process per executor."""

    name: str = "process"
    capabilities: Capabilities = _CAPABILITIES
    options: type = ProcessOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert isinstance(options, ProcessOptions)
        _refuse_nesting(config)
        _check_sendable(config.entrypoint, "entrypoint")
        _check_sendable(config.setup, "setup")
        wants_memory = any(
            limit is not None
            for limit in (config.memory_warn_mb, config.memory_limit_mb, options.recycle_memory_mb)
        )
        async with anyio.create_task_group() as tg:
            spec = WorkerSpec(_context(config, options), config, options, tg, wants_memory)
            yield _Factory(spec)
            tg.cancel_scope.cancel()
