"""Oneshot backend for executors: every job runs in a fresh Python process of its own.

An executor is a slot, not a process. ``start()`` checks the entrypoint and the setup in
a short-lived ``python -m executors_oneshot._runner`` process; then each job starts its
own, which runs the setup and the job, replies on a pipe and exits. A job that crashes,
times out or is cancelled costs its own process only: nothing is shared between jobs.

The module is the plugin: the ``executors`` entry point ``oneshot`` names it, and its
``executors_register_backends`` hook registers the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import executors

from ._backend import OneshotBackend, OneshotError, OneshotExecutor, OneshotOptions

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "OneshotBackend",
    "OneshotError",
    "OneshotExecutor",
    "OneshotOptions",
    "executors_register_backends",
]


@executors.hookimpl
def executors_register_backends(register: Callable[[executors.Backend], None]) -> None:
    register(OneshotBackend())
