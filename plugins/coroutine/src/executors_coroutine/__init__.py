"""Coroutine backend for executors: each executor is a task slot in the host event loop.

The densest backend: an executor costs a few objects, a job costs one task. There is no
isolation: a job that blocks the loop blocks the host, and memory is shared, so it
suits I/O-bound ``async def`` jobs. The setup function runs once per pool and its state
is shared by every slot.
"""

from __future__ import annotations

from ._backend import CoroutineBackend, CoroutineOptions
from ._hooks import executors_register_backends

__all__ = ["CoroutineBackend", "CoroutineOptions", "executors_register_backends"]
