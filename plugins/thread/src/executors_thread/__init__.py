"""Thread backend for executors: one thread per executor.

Each executor is a daemon thread for its whole life. With a sync entrypoint and setup it
takes jobs from a queue and runs them directly; with an async entrypoint or setup it runs
an event loop of its own (asyncio, or trio where configured) and the async calls run on
it. The setup's state is kept per thread. A thread cannot be killed:
a cancelled or timed-out job is asked to stop (a cancel scope for async jobs, a flag
that ``ctx.cancel_requested`` reads for sync ones), and a job that does not stop within
``close_timeout`` is abandoned: its executor is closed with reason ``abandoned`` and the
pool replaces it, while the thread runs on, a daemon that never blocks interpreter exit.
"""

from __future__ import annotations

from ._backend import ThreadBackend, ThreadExecutor, ThreadOptions, ThreadStartError
from ._hooks import executors_register_backends

__all__ = [
    "ThreadBackend",
    "ThreadExecutor",
    "ThreadOptions",
    "ThreadStartError",
    "executors_register_backends",
]
