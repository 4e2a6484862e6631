"""Pool configuration: validated attrs classes, loaded from layered sources.

Sources, lowest precedence first (each later one overrides the keys it sets):

1. defaults (the field defaults below)
2. ``[tool.executors]`` in ``pyproject.toml``
3. ``executors.toml`` (top-level keys)
4. ``EXECUTORS_*`` environment variables
5. explicit overrides (keyword arguments of :func:`open_pool`, CLI flags)

Backend-specific options live in a sub-table named after the backend
(``[tool.executors.process]``) and are validated by that backend's options class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from ._exceptions import ConfigError

#: A "module:function" reference, or the callable itself (it must be importable by
#: reference where the backend runs it in another process).
CallableRef = str | Callable[..., Any]
WhenFull = Literal["wait", "reject"]

_CPUS = os.cpu_count() or 1


def _positive(inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        msg = f"{attr.name} = {value!r} is invalid: must be > 0"
        raise ConfigError(msg)


def _non_negative(inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        msg = f"{attr.name} = {value!r} is invalid: must be >= 0"
        raise ConfigError(msg)


def _at_least_one(inst: object, attr: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        msg = f"{attr.name} = {value!r} is invalid: must be >= 1"
        raise ConfigError(msg)


def _callable_ref(inst: object, attr: attrs.Attribute[Any], value: CallableRef | None) -> None:
    if value is None or callable(value):
        return
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        msg = (
            f"{attr.name} = {value!r} is invalid: expected 'module:function' "
            "(for example 'myapp.jobs:handle')"
        )
        raise ConfigError(msg)


def _when_full(inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if value not in ("wait", "reject"):
        msg = f"{attr.name} = {value!r} is invalid: must be 'wait' or 'reject'"
        raise ConfigError(msg)


def _backend_name(inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value:
        msg = f"{attr.name} = {value!r} is invalid: must be a backend name such as 'process'"
        raise ConfigError(msg)


@attrs.frozen(kw_only=True)
class PoolConfig:
    """Everything a pool needs to know. Every knob is documented in
    ``docs/configuration.md``; defaults are chosen for long-running jobs."""

    #: name of the backend that provides executors
    backend: str = attrs.field(default="coroutine", validator=_backend_name)
    #: the job function, "module:function" or a top-level callable; sync or async
    entrypoint: CallableRef | None = attrs.field(default=None, validator=_callable_ref)
    #: run once when an executor starts; its return value reaches jobs as ``ctx.state``
    setup: CallableRef | None = attrs.field(default=None, validator=_callable_ref)
    #: ready executors kept waiting for jobs
    idle_executors: int = attrs.field(default=1, validator=_non_negative)
    #: upper bound on live executors (starting, ready, busy and closing)
    max_executors: int = attrs.field(default=_CPUS, validator=_at_least_one)
    #: executors starting at the same time
    max_concurrent_initializations: int = attrs.field(
        default=min(_CPUS, 4), validator=_at_least_one
    )
    #: seconds an executor may take to start (setup included)
    initialize_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: seconds a job may run; ``None`` means no limit
    job_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: seconds an executor may take to close gracefully before it is killed
    close_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: seconds ``drain()`` lets running jobs finish before cancelling them
    drain_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    #: jobs an executor runs before it is recycled; ``None`` means reuse forever
    max_jobs_per_executor: int | None = attrs.field(default=None, validator=_at_least_one)
    #: log a warning when an executor uses more memory than this (MiB)
    memory_warn_mb: float | None = attrs.field(default=None, validator=_positive)
    #: kill an executor that uses more memory than this (MiB); its job ends MEMORY_LIMIT
    memory_limit_mb: float | None = attrs.field(default=None, validator=_positive)
    #: seconds between health checks of every executor
    ping_interval: float = attrs.field(default=2.5, validator=_positive)
    #: kill an executor whose ping goes unanswered this long; its job ends UNRESPONSIVE
    ping_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: failed acquisition cycles (every in-flight spawn failed) before a job fails
    acquire_attempts: int = attrs.field(default=3, validator=_at_least_one)
    #: executors a job may be launched on when launches fail before acceptance
    launch_attempts: int = attrs.field(default=3, validator=_at_least_one)
    #: first delay (seconds) before re-spawning after a failure; doubles per failure
    spawn_backoff: float = attrs.field(default=0.1, validator=_non_negative)
    #: the longest delay between spawn attempts
    spawn_backoff_max: float = attrs.field(default=10.0, validator=_non_negative)
    #: consecutive spawn failures after which the pool reports itself unhealthy
    consecutive_failure_limit: int = attrs.field(default=5, validator=_at_least_one)
    #: what ``submit`` does when ``max_pending`` jobs already wait: "wait" or "reject"
    when_full: WhenFull = attrs.field(default="wait", validator=_when_full)
    #: jobs accepted but waiting for an executor; ``None`` means no bound
    max_pending: int | None = attrs.field(default=None, validator=_non_negative)
    #: the backend's own options (the ``[tool.executors.<backend>]`` table), unvalidated
    backend_options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.idle_executors > self.max_executors:
            msg = (
                f"idle_executors = {self.idle_executors} is invalid: must be <= "
                f"max_executors ({self.max_executors})"
            )
            raise ConfigError(msg)
        if self.spawn_backoff_max < self.spawn_backoff:
            msg = (
                f"spawn_backoff_max = {self.spawn_backoff_max} is invalid: must be >= "
                f"spawn_backoff ({self.spawn_backoff})"
            )
            raise ConfigError(msg)
        if (
            self.memory_warn_mb is not None
            and self.memory_limit_mb is not None
            and self.memory_warn_mb > self.memory_limit_mb
        ):
            msg = (
                f"memory_warn_mb = {self.memory_warn_mb} is invalid: must be <= "
                f"memory_limit_mb ({self.memory_limit_mb})"
            )
            raise ConfigError(msg)

    def evolve(self, **changes: Any) -> PoolConfig:
        """A copy with ``changes`` applied (and validated)."""
        return attrs.evolve(self, **changes)
