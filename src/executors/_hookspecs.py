"""Hook specifications (pluggy project name ``executors``).

Backends register with :func:`executors_register_backends`. Everything else is a
lifecycle observer the pool calls: metrics exporters, loggers, tracers. Observer hooks
must be quick and must not raise; an observer that raises is logged and ignored, so it
can never change a job's outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._executor import Backend
    from ._handle import PoolStatistics
    from ._job import Job, JobOutcome

hookspec = pluggy.HookspecMarker("executors")
hookimpl = pluggy.HookimplMarker("executors")


@hookspec
def executors_register_backends(register: Callable[[Backend], None]) -> None:
    """Register this plugin's backends by calling ``register(backend)`` for each."""


@hookspec
def executors_executor_ready(pool_name: str, executor_id: str) -> None:
    """An executor finished starting (setup included) and is ready for jobs."""


@hookspec
def executors_executor_closed(pool_name: str, executor_id: str, reason: str) -> None:
    """An executor is gone. ``reason`` says why:

    - ``broken``: it failed by itself (it died, or was not ready after a job nobody
      stopped). No other reason means an executor died on its own.
    - decisions of the pool's: ``recycled`` (``max_jobs_per_executor`` reached),
      ``idle_surplus``, ``pool_closed``;
    - a job stopped, which stopped its executor too: ``timed_out``, ``cancelled``;
    - a limit: ``unresponsive`` (``ping_timeout``), ``memory_limit`` (``memory_limit_mb``);
    - ``killed``: it broke the contract (``run_job`` raised, or answered with another
      job's outcome);
    - ``spawn_failed``, ``launch_failed`` (it refused a job with ``LaunchError``);
    - ``abandoned``: its job ignored cancellation and it was given up (a thread that
      runs on)."""


@hookspec
def executors_job_started(pool_name: str, job: Job, executor_id: str, attempt: int) -> None:
    """``job`` is being launched on ``executor_id`` (``attempt`` counts from 1): called
    just before the pool calls ``run_job``."""


@hookspec
def executors_job_finished(pool_name: str, job: Job, outcome: JobOutcome) -> None:
    """``job`` reached its one terminal ``outcome``. Called exactly once per accepted job."""


@hookspec
def executors_pool_unhealthy(
    pool_name: str, consecutive_failures: int, error: BaseException | None
) -> None:
    """Spawns failed ``consecutive_failure_limit`` times in a row; ``error`` is the last."""


@hookspec
def executors_pool_statistics(pool_name: str, statistics: PoolStatistics) -> None:
    """Periodic snapshot of the pool, once per ``ping_interval`` (for metrics exporters)."""
