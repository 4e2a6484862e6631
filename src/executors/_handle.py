"""What the pool hands its users: a job's handle, the pool's statistics, and the value
or exception a job's outcome stands for."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._exceptions import AcquireError, JobFailed
from ._job import FailureReason, Job, JobOutcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._pool import Pool
    from ._pool_state import LaunchJob


@attrs.frozen
class Percentiles:
    """Seconds taken by the pool's most recent jobs (up to 1,024 of them): ``p50``,
    ``p90``, ``p99`` and ``max`` (nearest rank), None while no job has been measured."""

    #: the measurements, in the order the jobs finished
    samples: tuple[float, ...] = attrs.field(default=(), repr=False)

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p90(self) -> float | None:
        return self.percentile(90)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)

    @property
    def max(self) -> float | None:
        return max(self.samples) if self.samples else None

    def percentile(self, percent: float) -> float | None:
        """The nearest-rank ``percent`` percentile (0 < percent <= 100)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = math.ceil(percent / 100 * len(ordered))
        return ordered[max(rank, 1) - 1]


@attrs.frozen
class PoolStatistics:
    """A snapshot of a pool, from :meth:`Pool.statistics`."""

    idle: int
    busy: int
    starting: int
    closing: int
    #: accepted jobs waiting for an executor
    waiting: int
    #: busy / max_executors
    load: float
    jobs_succeeded: int
    jobs_failed: int
    jobs_cancelled: int
    jobs_timed_out: int
    spawn_failures: int
    executors_started: int
    consecutive_spawn_failures: int
    healthy: bool
    draining: bool
    #: of the most recent jobs that ran: from submission to the start of their last run
    queue_wait: Percentiles = Percentiles()
    #: of the most recent jobs that ran: their last run, from its start to the outcome
    run_time: Percentiles = Percentiles()


@attrs.define(eq=False)
class JobHandle:
    """A submitted job. Await :meth:`outcome` or :meth:`result`; :meth:`cancel` stops it."""

    job: Job
    _pool: Pool = attrs.field(repr=False)
    submitted_at: float
    # Set (and dropped) at the job's next change: its outcome, or a launch handed over.
    # Made by the first waiter: a job run by run() in its caller's task usually has none.
    _done: anyio.Event | None = attrs.field(init=False, default=None, repr=False)
    _outcome: JobOutcome | None = attrs.field(init=False, default=None)
    # A task performs this job's launches (run()'s caller, or the task the pool starts at
    # a submitted job's first launch).
    _served: bool = attrs.field(init=False, default=False, repr=False)
    # The launch handed over and not yet begun. Invariant: None while the job runs.
    _handover: LaunchJob | None = attrs.field(init=False, default=None, repr=False)
    # when its last run began
    _started: float | None = attrs.field(init=False, default=None, repr=False)
    # Called with the outcome once the job has it, on the pool's loop: how map and the
    # PoolExecutor follow their jobs without a task waiting on each. Must not raise.
    _on_done: Callable[[JobOutcome], object] | None = attrs.field(
        init=False, default=None, repr=False
    )

    @property
    def id(self) -> str:
        return self.job.id

    def done(self) -> bool:
        """True once the job has its outcome."""
        return self._outcome is not None

    async def outcome(self) -> JobOutcome:
        """Wait for the job's one outcome. Cancelling this wait does not cancel the job."""
        while self._outcome is None:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        return self._outcome

    async def result(self) -> Any:
        """The job's return value; raises :class:`JobFailed` (or :class:`AcquireError`)
        carrying the outcome when it did not succeed."""
        return result_of(await self.outcome())

    def cancel(self) -> None:
        """Ask the pool to stop this job: a waiting job ends at once, a running one is
        cancelled on its executor. Its outcome is then CANCELLED (unless it already ended)."""
        self._pool._cancel(self.job.id, FailureReason.CANCELLED)

    def _set(self, outcome: JobOutcome) -> None:
        assert self._outcome is None, f"second outcome for {self.job.id}: {outcome}"
        self._outcome = outcome
        self._changed()
        # Dropped as it is called: a callback usually refers back to this handle, and
        # the cycle would keep the job's payload and value until a full collection.
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(outcome)

    def _changed(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done.set()


def result_of(outcome: JobOutcome) -> Any:
    """The value of a successful ``outcome``; raises what a failed one stands for."""
    if outcome.ok:
        return outcome.value
    cause = outcome.error.exception if outcome.error else None
    if outcome.reason is FailureReason.ACQUIRE_FAILED:
        msg = f"no executor could be started for job {outcome.job_id}"
        if outcome.error:
            msg += f"; last spawn error: {outcome.error}"
        raise AcquireError(msg, outcome) from cause
    raise JobFailed(outcome.describe(), outcome) from cause


def own_exception(outcome: JobOutcome) -> BaseException | None:
    """The exception a call raised itself (the outcome is RAISED and the exception object
    came back), for callers that raise it as the standard executors do; None otherwise.
    One from another process gets the traceback it had there as its cause."""
    error = outcome.error
    if outcome.reason is not FailureReason.RAISED or error is None or error.exception is None:
        return None
    exc = error.exception
    if exc.__cause__ is None and exc.__traceback__ is None:
        from .calls import RemoteTraceback

        exc.__cause__ = RemoteTraceback(error.traceback)
    return exc
