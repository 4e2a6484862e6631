"""Ray backend for executors: one Ray actor per executor.

Each executor is a threaded Ray actor, placed by Ray wherever the resources it asks for
(``num_cpus``, ``num_gpus``, ``resources``) are free: on this machine, or on any node of a
cluster. The setup runs inside the actor, a job is a call of its ``run`` method, a kill
is ``ray.kill``. Health comes from a ping, which answers with the actor's memory, and
from a call that fails as soon as Ray knows the actor is dead (a crash, a SIGKILL, its
node gone): a job it was running ends ``CRASHED`` and the pool replaces the executor.
"""

from __future__ import annotations

from ._backend import RayBackend, RayConnectError, RayOptions
from ._executor import RayExecutor, RayExecutorError
from ._hooks import executors_register_backends

__all__ = [
    "RayBackend",
    "RayConnectError",
    "RayExecutor",
    "RayExecutorError",
    "RayOptions",
    "executors_register_backends",
]
