"""Rule EX-11 (run_without_timeout_ended_at_drain) catches what it is for.

As in ``test_broken_backends.py``: a backend wrapping a real one breaks the promise the
rule checks, the rule must fail naming itself, and the same wrapper with nothing broken
passes it. The rule also checks the pool's half of the promise (a run() job with a
timeout keeps its cancel scope): a pool that loses it fails the rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from executors import Pool
from executors.testing.conformance import BackendConformance, rule
from tests.test_broken_backends import Case, Faithful, _failure_of, _suite_on

if TYPE_CHECKING:
    from executors import Job, JobOutcome

EX_11 = rule("EX-11")


@attrs.define(eq=False)
class KillSparesRunningJob(Faithful):
    """Its ``kill()`` closes only an idle executor: a running job runs on until something
    cancels its run, and the end of a drain, which kills the executor of a run() job
    without a timeout, never ends it."""

    running: bool = False

    async def run_job(self, job: Job) -> JobOutcome:
        self.running = True
        try:
            return await self.inner.run_job(job)
        finally:
            self.running = False

    async def kill(self) -> None:
        if not self.running:
            await self.inner.kill()


BROKEN = Case(KillSparesRunningJob, "coroutine", "EX-11")


def test_a_kill_that_spares_the_running_job_fails_the_rule_naming_it() -> None:
    with _suite_on(BROKEN, BROKEN.wrapper) as suite:
        failure = _failure_of(getattr(suite, EX_11.test_name))
    assert f"{EX_11.id} {EX_11.name}: " in failure
    assert "was still running when the drain returned" in failure
    assert "did not end it" in failure


@pytest.mark.parametrize("inner", ["coroutine", "process", "thread"])
def test_the_same_wrapper_unbroken_passes(inner: str) -> None:
    with _suite_on(Case(KillSparesRunningJob, inner, "EX-11"), Faithful) as suite:
        getattr(suite, EX_11.test_name)()


def test_a_pool_that_drops_the_scope_of_a_timed_run_fails_the_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool, not the backend, decides which runs hold a cancel scope: one that gave
    none to a run() job with a timeout would never time it out. The rule stops waiting
    for it and fails."""
    monkeypatch.setattr(Pool, "_holds_scope", lambda _pool, _job, *, caller: not caller)
    suite = BackendConformance()
    suite.prepare("coroutine", "quick")
    failure = _failure_of(getattr(suite, EX_11.test_name))
    assert f"{EX_11.id} {EX_11.name}: " in failure
    assert "a run() job with a timeout of 0.5s was still running" in failure
    assert "it was not stopped at its timeout" in failure
