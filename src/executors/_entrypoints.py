"""Resolving "module:function" references and checking them against a backend."""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import TYPE_CHECKING, Any

from ._exceptions import EntrypointError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._executor import Capabilities


def resolve_callable(
    ref: str | Callable[..., Any], *, what: str = "entrypoint"
) -> Callable[..., Any]:
    """Import ``ref`` ("package.module:function", dotted attributes allowed after the colon)
    or return it when it is already callable. Raises :class:`EntrypointError` naming the
    reference and what went wrong."""
    if callable(ref):
        return ref
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname:
        msg = f"{what} {ref!r} is invalid: expected 'module:function'{_as_module(ref)}"
        raise EntrypointError(msg)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:
        msg = (
            f"{what} {ref!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}{_as_module(ref)}"
        )
        raise EntrypointError(msg) from exc
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            msg = f"{what} {ref!r}: module {module_name!r} has no attribute {qualname!r}"
            raise EntrypointError(msg) from exc
    if not callable(target):
        msg = f"{what} {ref!r} is not callable: it is a {type(target).__name__}"
        raise EntrypointError(msg)
    return target


def _as_module(ref: str) -> str:
    """``"; did you mean 'app.jobs:f'?"`` for a reference written as a file's path
    (``app/jobs.py:f``), else ``""``: a module is named by its dotted import name."""
    path, colon, name = ref.rpartition(":")
    if not colon or not ("/" in path or "\\" in path or path.endswith(".py")):
        return ""
    dotted = path.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
    dotted = dotted.removeprefix("..").lstrip(".")
    if not dotted or not name:
        return ""
    return f"; did you mean {dotted + ':' + name!r}? (a module's import name, not its file)"


def is_callable(value: object) -> bool:
    """``callable(value)``, for values typed as callables that users may get wrong."""
    return callable(value)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions and objects with an ``async def __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 -- the method itself is inspected
    return call is not None and inspect.iscoroutinefunction(call)


def describe(ref: str | Callable[..., Any]) -> str:
    """How to name ``ref`` in messages."""
    if isinstance(ref, str):
        return repr(ref)
    module = getattr(ref, "__module__", "?")
    return repr(f"{module}:{getattr(ref, '__qualname__', repr(ref))}")


def check_runnable(
    ref: str | Callable[..., Any], backend: str, capabilities: Capabilities, *, what: str
) -> Callable[..., Any]:
    """Resolve ``ref`` and check that ``backend`` can run a function of its kind."""
    fn = resolve_callable(ref, what=what)
    if is_async_callable(fn):
        if not capabilities.async_entrypoints:
            msg = (
                f"{what} {describe(ref)} is an async function, but backend {backend!r} runs "
                "only sync functions: make it a plain 'def' or choose another backend"
            )
            raise EntrypointError(msg)
    elif not capabilities.sync_entrypoints:
        msg = (
            f"{what} {describe(ref)} is a sync function, but backend {backend!r} runs only "
            "async functions: make it 'async def' or choose a backend that runs sync "
            "functions (thread, process)"
        )
        raise EntrypointError(msg)
    return fn
