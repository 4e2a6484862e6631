"""The contract between the pool and a backend.

A *backend* (one per distribution: process, thread, coroutine, ...) opens shared
resources once per pool and hands the pool an :class:`ExecutorFactory`. Each
:class:`JobExecutor` the factory creates is one execution slot that runs at most one
job at a time. The pool drives every executor through these methods only; it never
reaches into a backend's internals.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._config import PoolConfig
    from ._job import Job, JobOutcome


class ExecutorState(enum.Enum):
    """Lifecycle of a slot: STARTING -> READY <-> BUSY -> CLOSING -> CLOSED."""

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    CLOSING = "closing"
    CLOSED = "closed"


@attrs.frozen
class Capabilities:
    """What a backend can and cannot do. The pool and the conformance suite adapt to it."""

    #: a job that crashes its executor cannot disturb other executors
    isolates_crashes: bool
    #: ``kill()`` stops a running job at once (a thread cannot be killed)
    can_kill_running_job: bool
    #: ``health().memory_mb`` is measured
    measures_memory: bool
    #: runs plain ``def`` entrypoints
    sync_entrypoints: bool
    #: runs ``async def`` entrypoints
    async_entrypoints: bool
    #: an executor can run more than one job
    reusable: bool = True
    #: executors may live on another machine (no pid, no signals, no shared files)
    remote: bool = False
    #: the setup function runs once per pool and its state is shared by every executor
    setup_per_pool: bool = False


@attrs.frozen
class Health:
    """A cheap snapshot of one executor's health, read by the pool's supervisor."""

    alive: bool
    #: memory attributed to the executor in MiB, ``None`` where not measurable
    memory_mb: float | None = None
    #: seconds of the last ping round trip, or since the oldest unanswered ping;
    #: ``None`` where the backend does not ping
    ping_latency: float | None = None
    #: the executor was given up while its job ignored cancellation (a thread cannot be
    #: killed); the pool reports it closed with reason ``abandoned``
    abandoned: bool = False


@runtime_checkable
class JobExecutor(Protocol):
    """One execution slot: at most one job at a time.

    Every method may be cancelled by the pool (it enforces ``initialize_timeout``,
    ``job_timeout`` and ``close_timeout`` with cancel scopes). A cancelled ``start()``
    or ``run_job()`` lets the cancellation propagate, returns within ``close_timeout``
    and must leave nothing behind: no process, thread or task.

    The conformance suite (``executors check``, docs/conformance.md) checks each
    promise of these docstrings, on bare executors and through a pool.

    Optional: ``async def wait_exited(self) -> None``, which returns once the executor
    is gone for whatever reason (closed, killed, or died on its own). A backend whose
    executors can die by themselves (a worker process) provides it: the pool then
    replaces a dead idle executor at once, instead of at its next health check.
    """

    @property
    def id(self) -> str:
        """Unique within the pool; appears in logs, hooks and outcomes."""
        ...

    @property
    def state(self) -> ExecutorState:
        """The slot's current state, which must match what it does: ``BUSY`` while a job
        runs; ``READY`` only if ``run_job`` would take a job now. After ``run_job``
        returns or is cancelled the pool reuses the slot only if this is ``READY``."""
        ...

    async def start(self) -> None:
        """Bring the slot up and run the setup function.

        Returns when the slot is ``READY``. Raises any exception on failure (the setup's
        own exception where the setup raised); the pool then calls ``aclose()``.
        """

    async def run_job(self, job: Job) -> JobOutcome:
        """Run ``job`` and return its outcome.

        A job's own failure, a crash of the slot and a kill are outcomes, not exceptions:
        whatever the job's code raises is its ``RAISED`` outcome, ``BaseException``
        subclasses included (``SystemExit``, ``GeneratorExit``...), except a cancellation
        (and, where the job shares the host's thread, ``KeyboardInterrupt``); a slot that
        dies with the job may report it ``CRASHED``.
        Raise :class:`~executors.LaunchError` only when the job was never accepted (no part
        of it ran), so the pool may safely retry it on another executor; and raise it,
        without running anything, whenever the state is not ``READY`` (one job at a time).

        When cancelled, let the cancellation propagate within ``close_timeout``; once it
        has, none of the job's code runs any more (a backend that cannot kill its job
        waits for it to stop, or gives the slot up: ``Health.abandoned``).

        It must yield to the event loop at least once (a checkpoint), even for a job that
        finishes at once: ``Pool.run`` awaits it directly, and a loop of runs that never
        yields would starve every other task.
        """
        ...

    async def aclose(self) -> None:
        """Stop gracefully, then kill what is left, within ``close_timeout`` on its own
        (the pool's ``kill()`` after it is a fallback for broken slots). Leaves the slot
        ``CLOSED``. Idempotent; never raises."""

    async def kill(self) -> None:
        """Stop at once, abandoning any running job, whose ``run_job`` then returns a
        failed outcome promptly. Leaves the slot ``CLOSED``. Idempotent; never raises."""

    def health(self) -> Health:
        """A cheap, non-blocking, true snapshot: ``alive`` is false once the executor is
        dead, ``memory_mb`` (where measured) is its real memory, and ``ping_latency``
        (where it pings) grows while a ping goes unanswered."""
        ...


class ExecutorFactory(Protocol):
    """Creates executors for one pool; returned by :meth:`Backend.open`."""

    def create_executor(self, executor_id: str) -> JobExecutor:
        """A new executor in state ``STARTING``; the pool calls ``start()`` on it next."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A kind of executor, registered by a plugin through ``executors_register_backends``."""

    @property
    def name(self) -> str:
        """The name users select in configuration (``backend = "process"``)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do."""
        ...

    @property
    def options(self) -> type:
        """An attrs class of this backend's own options.

        The pool builds it from the ``[tool.executors.<name>]`` table; its validators'
        errors are reported with the source of each value.
        """
        ...

    def open(
        self, config: PoolConfig, options: object
    ) -> AbstractAsyncContextManager[ExecutorFactory]:
        """Open the resources shared by one pool's executors (a forkserver, a thread-pool,
        a setup state shared by every coroutine slot...) and yield a factory.

        ``options`` is an instance of :attr:`options`. Leaving the context releases
        everything; the pool closes every executor first.
        """
        ...
