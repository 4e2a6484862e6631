"""Plain function calls as jobs: what runs ``pool.call(fn, *args, **kwargs)`` and
:class:`executors.PoolExecutor` on an executor.

A pool opened without an ``entrypoint`` runs calls: each job's payload is a :class:`Call`
(a function and its arguments), and the pool gives its backend one of the two
entrypoints below, which run it. They are plain functions in a module of their own,
importable by name in a worker process without the rest of the library.

Inside a call, :func:`current_job` returns the job's :class:`~executors.JobContext`: the
setup's state, the job's metadata, and whether the pool asked it to stop.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
from collections.abc import Awaitable
from types import GeneratorType
from typing import TYPE_CHECKING, Any

import attrs

from ._entrypoints import is_async_callable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._job import JobContext

__all__ = [
    "Call",
    "RemoteTraceback",
    "current_job",
    "run_call",
    "run_call_async",
    "run_chunk",
    "run_chunk_async",
]

#: the entrypoints a pool without one of its own gives its backend
SYNC_ENTRYPOINT = "executors.calls:run_call"
ASYNC_ENTRYPOINT = "executors.calls:run_call_async"

_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("executors_current_job")


@attrs.frozen
class Call:
    """``function(*args, **kwargs)``, sent as a job's payload. On a backend that runs
    jobs in another process the function travels by reference (its module and name)
    and the arguments by pickle."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)

    def describe(self) -> str:
        """The function's name, for messages."""
        module = getattr(self.function, "__module__", None)
        name = getattr(self.function, "__qualname__", None) or repr(self.function)
        return f"{module}:{name}" if module else name


class RemoteTraceback(Exception):
    """The traceback of an exception a call raised in another process, chained to it as
    its ``__cause__`` (as ``ProcessPoolExecutor`` does): the exception object travels,
    its traceback does not."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback.rstrip()}\n"""'


def current_job() -> JobContext:
    """The context of the job this call runs in (its setup's state, its metadata,
    ``cancel_requested``). Raises :class:`LookupError` outside a call run by a pool."""
    try:
        return _current.get()
    except LookupError:
        msg = "current_job() is called outside a job run by pool.call() or a PoolExecutor"
        raise LookupError(msg) from None


def _payload(ctx: JobContext) -> Call:
    call = ctx.payload
    if not isinstance(call, Call):
        msg = (
            f"job {ctx.job_id} is not a call: a pool without an entrypoint runs "
            f"pool.call(function, ...) and PoolExecutor jobs, not {type(call).__name__} "
            "payloads (set an entrypoint to run those)"
        )
        raise TypeError(msg)
    return call


def run_call(ctx: JobContext) -> Any:
    """The entrypoint of a call on a backend that runs sync functions (thread, process).
    An ``async def`` function is run to its end on an event loop of its own."""
    call = _payload(ctx)
    token = _current.set(ctx)
    try:
        value = call.function(*call.args, **call.kwargs)
        if inspect.isawaitable(value):
            import asyncio

            value = asyncio.run(_awaited(value))
        return value
    finally:
        _current.reset(token)


async def run_call_async(ctx: JobContext) -> Any:
    """The entrypoint of a call on a backend that runs async functions only (coroutine).
    A plain ``def`` function runs right on the event loop: keep it short."""
    call = _payload(ctx)
    token = _current.set(ctx)
    try:
        value = call.function(*call.args, **call.kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value
    finally:
        _current.reset(token)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run_chunk(function: Callable[..., Any], items: Sequence[Any], star: bool = True) -> list[Any]:
    """``function`` over ``items`` (each a tuple of arguments with ``star``, else the one
    argument): one job for several items of a ``map`` with ``chunksize`` > 1. An ``async
    def`` function runs every item on one event loop of its own, one after the other; so
    do the awaitables a plain function returns, as :func:`run_call` awaits them."""
    if is_async_callable(function):
        import asyncio

        return asyncio.run(run_chunk_async(function, items, star))
    values = _called(function, items, star)
    if _has_awaitables(values):
        import asyncio

        return asyncio.run(_settled(values))
    return values


async def run_chunk_async(
    function: Callable[..., Any], items: Sequence[Any], star: bool = True
) -> list[Any]:
    """:func:`run_chunk` on a backend that runs async functions only (a plain ``def``
    runs right on its event loop)."""
    if is_async_callable(function):
        if star:
            return [await function(*item) for item in items]
        return [await function(item) for item in items]
    values = _called(function, items, star)
    return await _settled(values) if _has_awaitables(values) else values


def _called(function: Callable[..., Any], items: Sequence[Any], star: bool) -> list[Any]:
    return list(itertools.starmap(function, items) if star else map(function, items))


def _has_awaitables(values: list[Any]) -> bool:
    # by type first: a chunk of plain values costs one pass in C
    kinds = set(map(type, values))
    if not any(issubclass(kind, Awaitable) or kind is GeneratorType for kind in kinds):
        return False
    return any(map(inspect.isawaitable, values))


async def _settled(values: list[Any]) -> list[Any]:
    return [await value if inspect.isawaitable(value) else value for value in values]
