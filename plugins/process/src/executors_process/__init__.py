"""Process backend for executors: one supervised OS process per executor.

Workers start from a forkserver (Linux) or a fresh interpreter, talk to the host over a
socketpair with length-prefixed frames, answer pings from a thread of their own, forward
their log records, and die with the host. The code that runs inside a worker is in
``_worker`` and imports little.
"""

from __future__ import annotations

from ._backend import NestedPoolError, ProcessBackend, ProcessOptions
from ._executor import ProcessExecutor, WorkerError
from ._hooks import executors_register_backends

__all__ = [
    "NestedPoolError",
    "ProcessBackend",
    "ProcessExecutor",
    "ProcessOptions",
    "WorkerError",
    "executors_register_backends",
]
