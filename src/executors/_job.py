"""The job model: what is run, what it sees, and how it ended."""

from __future__ import annotations

import enum
import traceback
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class JobStatus(enum.Enum):
    """The coarse result of a job."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class FailureReason(enum.Enum):
    """Why a job did not succeed."""

    #: the entrypoint raised; ``outcome.error`` holds the remote exception
    RAISED = "raised"
    #: the executor died while running the job (process exit, segfault, simulated crash)
    CRASHED = "crashed"
    #: the executor was killed while running the job (by ``kill()`` or the pool)
    KILLED = "killed"
    #: the executor stopped answering pings within ``ping_timeout``
    UNRESPONSIVE = "unresponsive"
    #: the executor went over ``memory_limit_mb``
    MEMORY_LIMIT = "memory_limit"
    #: the job ran longer than its timeout
    TIMED_OUT = "timed_out"
    #: the job was cancelled by its submitter
    CANCELLED = "cancelled"
    #: no executor could be started for the job (``acquire_attempts`` cycles failed)
    ACQUIRE_FAILED = "acquire_failed"
    #: every launch attempt raised :class:`LaunchError`
    LAUNCH_FAILED = "launch_failed"
    #: the pool closed (drain timed out) before the job finished
    POOL_CLOSED = "pool_closed"
    #: the job ignored cancellation and its executor was abandoned
    ABANDONED = "abandoned"


#: read once a job or more: an Enum member read off its class runs Python code on 3.11
_SUCCEEDED = JobStatus.SUCCEEDED

_STATUS_OF_REASON = {
    FailureReason.TIMED_OUT: JobStatus.TIMED_OUT,
    FailureReason.CANCELLED: JobStatus.CANCELLED,
    FailureReason.POOL_CLOSED: JobStatus.CANCELLED,
}


def status_of(reason: FailureReason | None) -> JobStatus:
    """The :class:`JobStatus` a failure reason implies (``None`` means success)."""
    if reason is None:
        return _SUCCEEDED
    return _STATUS_OF_REASON.get(reason, JobStatus.FAILED)


@attrs.frozen
class RemoteError:
    """An exception raised where the job ran, carried back as data.

    ``exception`` is the original exception object when it could be carried (same
    process, or it pickled); the text fields are always there.
    """

    type_name: str
    message: str
    traceback: str
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> RemoteError:
        """Capture ``exc`` with its traceback text."""
        cls_ = type(exc)
        name = cls_.__qualname__
        if cls_.__module__ not in ("builtins", "__main__"):
            name = f"{cls_.__module__}.{name}"
        text = "".join(traceback.format_exception(exc))
        return cls(type_name=name, message=str(exc), traceback=text, exception=exc)

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


@attrs.frozen
class Job:
    """One unit of work. ``payload`` reaches the entrypoint through :class:`JobContext`."""

    id: str
    payload: Any
    #: seconds the job may run; ``None`` uses the pool's ``job_timeout``
    timeout: float | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define(eq=False)
class JobContext:
    """What an entrypoint receives: ``def entrypoint(ctx: JobContext) -> object``.

    ``state`` is whatever the pool's ``setup`` function returned on this executor
    (``None`` when there is no setup). Sync entrypoints that run long should poll
    :attr:`cancel_requested` and return early when it turns true.
    """

    payload: Any
    job_id: str
    executor_id: str
    state: Any = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    _cancel_check: Callable[[], bool] = attrs.field(default=lambda: False, alias="cancel_check")

    @property
    def cancel_requested(self) -> bool:
        """True once the pool asked this job to stop (cancelled, timed out, draining)."""
        return self._cancel_check()


@attrs.frozen
class JobOutcome:
    """How a job ended. Every accepted job gets exactly one, reported exactly once.

    Timestamps are in the host event loop's clock (``anyio.current_time()``), so they
    compare with each other, not with wall-clock time.
    """

    job_id: str
    status: JobStatus
    value: Any = None
    reason: FailureReason | None = None
    error: RemoteError | None = None
    executor_id: str | None = None
    #: how many executors the job was launched on (retries after LaunchError add one)
    attempts: int = 0
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def success(cls, job_id: str, value: object) -> JobOutcome:
        """The outcome of a job that returned ``value``."""
        # positional: quicker than keywords, and this runs once a job
        return cls(job_id, _SUCCEEDED, value)

    @classmethod
    def failure(
        cls, job_id: str, reason: FailureReason, error: RemoteError | None = None
    ) -> JobOutcome:
        """The outcome of a job that ended for ``reason``."""
        return cls(job_id=job_id, status=status_of(reason), reason=reason, error=error)

    @property
    def ok(self) -> bool:
        """True when the job succeeded."""
        return self.status is _SUCCEEDED

    def describe(self) -> str:
        """One line for logs and error messages."""
        where = f" on executor {self.executor_id}" if self.executor_id else ""
        if self.ok:
            return f"job {self.job_id} succeeded{where}"
        reason = self.reason.value if self.reason else self.status.value
        detail = f": {self.error}" if self.error else ""
        return f"job {self.job_id} {self.status.value} ({reason}){where}{detail}"
