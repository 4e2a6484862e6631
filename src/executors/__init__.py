"""executors: run jobs on pluggable executors through a supervised, prewarmed pool.

>>> async with open_pool(entrypoint="myapp.jobs:handle") as pool:   # doctest: +SKIP
...     value = await pool.run({"x": 1})
"""

from __future__ import annotations

import typing as _typing

from ._lazy import exports as _exports

# The names are imported on first use (PEP 562): a worker process that needs only the
# job model (``from executors import JobContext``) does not import the pool, its
# configuration and anyio. Type checkers read the imports below.
if _typing.TYPE_CHECKING:
    from ._config import LoadedConfig as LoadedConfig
    from ._config import PoolConfig as PoolConfig
    from ._config import build_backend_options as build_backend_options
    from ._config import load_config as load_config
    from ._entrypoints import resolve_callable as resolve_callable
    from ._exceptions import AcquireError as AcquireError
    from ._exceptions import ConfigError as ConfigError
    from ._exceptions import ConfigWarning as ConfigWarning
    from ._exceptions import DuplicateBackendError as DuplicateBackendError
    from ._exceptions import EntrypointError as EntrypointError
    from ._exceptions import ExecutorsError as ExecutorsError
    from ._exceptions import JobFailed as JobFailed
    from ._exceptions import LaunchError as LaunchError
    from ._exceptions import PluginError as PluginError
    from ._exceptions import PoolClosed as PoolClosed
    from ._exceptions import PoolFull as PoolFull
    from ._exceptions import UnknownBackendError as UnknownBackendError
    from ._executor import Backend as Backend
    from ._executor import Capabilities as Capabilities
    from ._executor import ExecutorFactory as ExecutorFactory
    from ._executor import ExecutorState as ExecutorState
    from ._executor import Health as Health
    from ._executor import JobExecutor as JobExecutor
    from ._futures import PoolExecutor as PoolExecutor
    from ._handle import JobHandle as JobHandle
    from ._handle import Percentiles as Percentiles
    from ._handle import PoolStatistics as PoolStatistics
    from ._hookspecs import hookimpl as hookimpl
    from ._hookspecs import hookspec as hookspec
    from ._job import FailureReason as FailureReason
    from ._job import Job as Job
    from ._job import JobContext as JobContext
    from ._job import JobOutcome as JobOutcome
    from ._job import JobStatus as JobStatus
    from ._job import RemoteError as RemoteError
    from ._mapping import MapResults as MapResults
    from ._plugins import BackendInfo as BackendInfo
    from ._plugins import BrokenPlugin as BrokenPlugin
    from ._plugins import Registry as Registry
    from ._plugins import default_registry as default_registry
    from ._pool import Pool as Pool
    from ._pool import open_pool as open_pool

#: public name -> the private module that defines it
_HOMES = {
    "LoadedConfig": "._config",
    "PoolConfig": "._config",
    "build_backend_options": "._config",
    "load_config": "._config",
    "resolve_callable": "._entrypoints",
    "AcquireError": "._exceptions",
    "ConfigError": "._exceptions",
    "ConfigWarning": "._exceptions",
    "DuplicateBackendError": "._exceptions",
    "EntrypointError": "._exceptions",
    "ExecutorsError": "._exceptions",
    "JobFailed": "._exceptions",
    "LaunchError": "._exceptions",
    "PluginError": "._exceptions",
    "PoolClosed": "._exceptions",
    "PoolFull": "._exceptions",
    "UnknownBackendError": "._exceptions",
    "Backend": "._executor",
    "Capabilities": "._executor",
    "ExecutorFactory": "._executor",
    "ExecutorState": "._executor",
    "Health": "._executor",
    "JobExecutor": "._executor",
    "hookimpl": "._hookspecs",
    "hookspec": "._hookspecs",
    "FailureReason": "._job",
    "Job": "._job",
    "JobContext": "._job",
    "JobOutcome": "._job",
    "JobStatus": "._job",
    "RemoteError": "._job",
    "BackendInfo": "._plugins",
    "BrokenPlugin": "._plugins",
    "Registry": "._plugins",
    "default_registry": "._plugins",
    "JobHandle": "._handle",
    "MapResults": "._mapping",
    "Pool": "._pool",
    "PoolExecutor": "._futures",
    "PoolStatistics": "._handle",
    "Percentiles": "._handle",
    "open_pool": "._pool",
}

__version__ = "0.1.0"

__all__ = [
    "AcquireError",
    "Backend",
    "BackendInfo",
    "BrokenPlugin",
    "Capabilities",
    "ConfigError",
    "ConfigWarning",
    "DuplicateBackendError",
    "EntrypointError",
    "ExecutorFactory",
    "ExecutorState",
    "ExecutorsError",
    "FailureReason",
    "Health",
    "Job",
    "JobContext",
    "JobExecutor",
    "JobFailed",
    "JobHandle",
    "JobOutcome",
    "JobStatus",
    "LaunchError",
    "LoadedConfig",
    "MapResults",
    "Percentiles",
    "PluginError",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolExecutor",
    "PoolFull",
    "PoolStatistics",
    "Registry",
    "RemoteError",
    "UnknownBackendError",
    "__version__",
    "build_backend_options",
    "default_registry",
    "hookimpl",
    "hookspec",
    "load_config",
    "open_pool",
    "resolve_callable",
]


if not _typing.TYPE_CHECKING:  # hidden from type checkers, which then flag unknown names
    __getattr__, __dir__ = _exports(globals(), _HOMES)
