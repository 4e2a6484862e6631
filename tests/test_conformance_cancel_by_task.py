"""Rule EX-12 (cancel_by_task_at_drain) catches what it is for, and applies only where it can.

As in ``test_broken_backends.py``: a backend wrapping a real one breaks the promise the
rule checks, the rule must fail naming itself, and the same wrapper with nothing broken
passes it. The promise: a backend that declares ``cancel_by_task`` lets the
cancellation of a run() caller's task (which the pool sends at a drain's end, on
asyncio, to a run() job without a timeout) end its ``run_job``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from executors import JobOutcome
from executors.testing.conformance import BackendConformance, rule
from tests.test_broken_backends import Case, Faithful, _failure_of, _suite_on

if TYPE_CHECKING:
    from executors import Job

EX_12 = rule("EX-12")
#: seconds a broken run_job goes on after swallowing the cancellation, unless cancelled
#: again: longer than any drain of the rule, and bounded, so that a failing rule ends
GOES_ON = 30.0


@attrs.define(eq=False)
class SwallowsCancellation(Faithful):
    """Declares ``cancel_by_task`` (its inner backend does), but its ``run_job`` catches
    the CancelledError sent to a run without a timeout and goes on waiting: the pool
    cancels its caller's task once, so the job runs on past the drain's end."""

    async def run_job(self, job: Job) -> JobOutcome:
        try:
            return await self.inner.run_job(job)
        except asyncio.CancelledError:
            if job.timeout is not None:
                raise  # its scope's: a scope cancels again at every await anyway
            await anyio.sleep(GOES_ON)  # ended by a second cancellation, the rule's
            raise


@attrs.define(eq=False)
class CancellationAsSuccess(Faithful):
    """Declares ``cancel_by_task``, but its ``run_job`` turns the CancelledError sent to
    a run without a timeout into a success: the job ends, but not as the pool ended it."""

    async def run_job(self, job: Job) -> JobOutcome:
        try:
            return await self.inner.run_job(job)
        except asyncio.CancelledError:
            if job.timeout is not None:
                raise
            return JobOutcome.success(job.id, None)


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        (SwallowsCancellation, "was still running when the drain returned"),
        (CancellationAsSuccess, "run() of a job that hangs returned a value"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_a_run_job_that_swallows_the_cancellation_fails_the_rule_naming_it(
    wrapper: type[Faithful], message: str
) -> None:
    with _suite_on(Case(wrapper, "thread", "EX-12"), wrapper) as suite:
        assert suite.capabilities.cancel_by_task, "the broken backend must claim it"
        assert not suite.capabilities.cheap_kill, "else the pool kills instead"
        failure = _failure_of(getattr(suite, EX_12.test_name))
    assert f"{EX_12.id} {EX_12.name}: " in failure
    assert "on asyncio, scripted:" in failure  # trio's scope is not what it breaks
    assert message in failure
    assert "the cancellation of its caller's task did not end it" in failure


def test_the_same_wrapper_unbroken_passes() -> None:
    with _suite_on(Case(SwallowsCancellation, "thread", "EX-12"), Faithful) as suite:
        getattr(suite, EX_12.test_name)()


@pytest.mark.parametrize("backend", ["coroutine", "process", "oneshot"])
def test_the_rule_does_not_apply_to_backends_that_keep_their_scope(backend: str) -> None:
    suite = BackendConformance()
    suite.prepare(backend, "quick")
    assert not suite.capabilities.cancel_by_task
    with pytest.raises(pytest.skip.Exception, match="requires capability cancel_by_task"):
        getattr(suite, EX_12.test_name)()
