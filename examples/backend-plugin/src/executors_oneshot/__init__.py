"""Oneshot backend for executors: every job runs in a fresh Python process of its own.

An executor is a slot, not a process. ``start()`` checks the entrypoint and the setup in
a short-lived ``python -m executors_oneshot._runner`` process; then each job starts its
own, which runs the setup and the job, replies on a pipe and exits. A job that crashes,
times out or is cancelled costs its own process only: nothing is shared between jobs.

The module is the plugin: the ``executors`` entry point ``oneshot`` names it, and its
``executors_register_backends`` hook registers the backend.
"""

from __future__ import annotations

import typing

import executors

# Every job's process runs ``python -m executors_oneshot._runner``, which imports this
# package first: the host side (``_backend``, with anyio) is imported on first use only,
# so that a job's process starts without it.
if typing.TYPE_CHECKING:
    from collections.abc import Callable

    from ._backend import OneshotBackend as OneshotBackend
    from ._backend import OneshotError as OneshotError
    from ._backend import OneshotExecutor as OneshotExecutor
    from ._backend import OneshotOptions as OneshotOptions

__all__ = [
    "OneshotBackend",
    "OneshotError",
    "OneshotExecutor",
    "OneshotOptions",
    "executors_register_backends",
]

if not typing.TYPE_CHECKING:  # hidden from type checkers, which then flag unknown names

    def __getattr__(name: str) -> typing.Any:
        if name not in __all__:
            msg = f"module {__name__!r} has no attribute {name!r}"
            raise AttributeError(msg)
        from . import _backend

        return getattr(_backend, name)


@executors.hookimpl
def executors_register_backends(register: Callable[[executors.Backend], None]) -> None:
    from ._backend import OneshotBackend

    register(OneshotBackend())
