"""Every public error of executors. All derive from :class:`ExecutorsError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._job import JobOutcome


class ExecutorsError(Exception):
    """Base class of every error raised by executors."""


class ConfigError(ExecutorsError, ValueError):
    """Raised when a configuration value is missing, malformed or out of range.

    The message names the source (file and table, environment variable, or override),
    the key, the offending value and what is allowed instead.
    """


class ConfigWarning(UserWarning):
    """Warned when the configuration holds something that is ignored: an
    ``EXECUTORS_*`` environment variable that is no setting. The message names it, and
    the setting it may be a misspelling of."""


class UnknownBackendError(ConfigError, LookupError):
    """Raised when the configured backend name is not registered by any plugin."""


class EntrypointError(ConfigError):
    """Raised when an entrypoint or setup reference cannot be imported, is not callable,
    or is of a kind (sync/async) the chosen backend cannot run."""


class PluginError(ExecutorsError, RuntimeError):
    """Raised when a plugin cannot be loaded or registers something invalid.

    Plugin errors found while loading entry points are collected, not raised, so one
    broken plugin never stops the others: see :meth:`Registry.broken`.
    """


class DuplicateBackendError(PluginError):
    """Raised when two plugins register a backend under the same name."""


class LaunchError(ExecutorsError, RuntimeError):
    """Raised when a job was never accepted by its slot, by :meth:`JobExecutor.run_job`.

    The pool may retry such a job on another executor (at most ``launch_attempts`` times):
    raising it promises that no part of the job ran.
    """


class PoolClosed(ExecutorsError, RuntimeError):
    """Raised when a job is submitted to a pool that is draining or closed."""


class PoolFull(ExecutorsError, RuntimeError):
    """Raised when ``submit`` finds ``max_pending`` jobs waiting and ``when_full = "reject"``."""


class JobFailed(ExecutorsError, RuntimeError):
    """Raised when a job did not succeed, by :meth:`JobHandle.result` and :meth:`Pool.run`.

    ``outcome`` holds the full :class:`JobOutcome`: status, reason, remote error with its
    traceback text, executor id, attempts and timestamps.
    """

    def __init__(self, message: str, outcome: JobOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class AcquireError(JobFailed):
    """Raised when no executor could be acquired for a job: every spawn failed for
    ``acquire_attempts`` cycles. Its ``__cause__`` is the last spawn's exception."""
