"""What a backend author needs: the contract a backend implements, and the helpers every
backend repeats.

A backend distribution imports from here (or from :mod:`executors`), never from the
private ``executors._*`` modules: these names are the stable surface for backends, and
the bundled backends use nothing else. See ``docs/writing-a-backend.md``.
"""

from __future__ import annotations

import inspect as _inspect
import typing as _typing

import attrs as _attrs

from ._clock import event_class as event_class
from ._clock import loop_clock as loop_clock
from ._clock import on_asyncio as on_asyncio
from ._config import PoolConfig as PoolConfig
from ._entrypoints import resolve_callable as resolve_callable
from ._exceptions import EntrypointError as EntrypointError
from ._exceptions import ExecutorsError as ExecutorsError
from ._exceptions import LaunchError as LaunchError
from ._executor import Backend as Backend
from ._executor import Capabilities as Capabilities
from ._executor import ExecutorFactory as ExecutorFactory
from ._executor import ExecutorState as ExecutorState
from ._executor import Health as Health
from ._executor import JobExecutor as JobExecutor
from ._helpers import forget_helper_process as forget_helper_process
from ._helpers import register_helper_process as register_helper_process
from ._hookspecs import hookimpl as hookimpl
from ._job import FailureReason as FailureReason
from ._job import Job as Job
from ._job import JobContext as JobContext
from ._job import JobOutcome as JobOutcome
from ._job import JobStatus as JobStatus
from ._job import RemoteError as RemoteError
from ._limits import os_problem as describe_os_error
from ._limits import task_limits as task_limits

if _typing.TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "Backend",
    "Capabilities",
    "EntrypointError",
    "ExecutorFactory",
    "ExecutorState",
    "ExecutorsError",
    "FailureReason",
    "Health",
    "Job",
    "JobContext",
    "JobExecutor",
    "JobOutcome",
    "JobStatus",
    "LaunchError",
    "PoolConfig",
    "RemoteError",
    "call",
    "callable_ref",
    "describe_os_error",
    "event_class",
    "factory",
    "forget_helper_process",
    "hookimpl",
    "loop_clock",
    "not_ready",
    "on_asyncio",
    "register_helper_process",
    "resolve_callable",
    "task_limits",
]


def not_ready(executor_id: str, job_id: str, state: ExecutorState) -> LaunchError:
    """The :class:`LaunchError` a slot raises for a job it cannot take in ``state``
    (anything but ``READY``): ``if self.state is not ExecutorState.READY: raise
    not_ready(self.id, job.id, self.state)``. The check stays in the backend's own
    ``run_job``, which runs once a job; only the refusal is shared."""
    msg = f"executor {executor_id} cannot take job {job_id}: it is {state.value}"
    return LaunchError(msg)


def callable_ref(function: Callable[..., Any] | str, *, what: str = "entrypoint") -> str:
    """``function`` named as ``"module:qualified.name"``, for a backend that runs it
    elsewhere (another process, another machine) and imports it there; a reference
    string is returned as it is. Raises :class:`EntrypointError` for a function that
    cannot be imported by name (a lambda, a local function, one whose name does not
    lead back to it)."""
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        msg = (
            f"{what} {function!r} cannot be imported by name (a lambda or a local "
            "function?): define it at the top level of a module"
        )
        raise EntrypointError(msg)
    ref = f"{module}:{qualname}"
    try:
        found = resolve_callable(ref, what=what)
    except EntrypointError as exc:
        msg = f"{what} {function!r} cannot be imported as {ref!r}: {exc}"
        raise EntrypointError(msg) from exc
    if found is not function:
        msg = f"{what} {function!r} cannot be imported as {ref!r}: that name is another object"
        raise EntrypointError(msg)
    return ref


async def call(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, awaited when it returns an awaitable: a setup or entrypoint
    may be ``def`` or ``async def``."""
    value = function(*args)
    if _inspect.isawaitable(value):
        value = await value
    return value


@_attrs.frozen
class _Factory:
    create: Callable[[str], JobExecutor]

    def create_executor(self, executor_id: str) -> JobExecutor:
        return self.create(executor_id)


def factory(create: Callable[[str], JobExecutor]) -> ExecutorFactory:
    """An :class:`ExecutorFactory` whose ``create_executor(executor_id)`` is
    ``create(executor_id)``: what ``Backend.open`` yields, without a class of its own."""
    return _Factory(create)
