"""Process backend for executors: one supervised OS process per executor.

Workers fork from the backend's fork server (Linux) or start as fresh interpreters, talk
to the host over a socketpair with length-prefixed frames, answer pings from a thread of
their own, forward their log records, and die with the host. The code that runs inside a
worker is in ``_worker`` and imports little.

The names below are imported on first use (PEP 562): the fork server and its workers
import this package for ``_server`` and ``_worker`` alone, not the host's side (anyio,
psutil), whose pages every fork would copy the tables of.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._hooks import executors_register_backends

if TYPE_CHECKING:
    from ._backend import NestedPoolError, ProcessBackend, ProcessOptions
    from ._executor import ProcessExecutor, WorkerError

__all__ = [
    "NestedPoolError",
    "ProcessBackend",
    "ProcessExecutor",
    "ProcessOptions",
    "WorkerError",
    "executors_register_backends",
]

_HOMES = {
    "NestedPoolError": "._backend",
    "ProcessBackend": "._backend",
    "ProcessOptions": "._backend",
    "ProcessExecutor": "._executor",
    "WorkerError": "._executor",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
