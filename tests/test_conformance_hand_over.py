"""Rule EX-13 (hands_over_at_once) catches what it is for.

As in ``test_broken_backends.py``: a backend wrapping a real one breaks the promise the
rule checks, the rule must fail naming itself, and the same wrapper with nothing broken
passes it. The promise: a backend that declares ``hands_over_at_once`` has handed the
job over when its ``run_job`` first suspends, and has run none of the job's code on the
host's loop by then. Which backends the rule applies to is checked in
``test_conformance.py``, with the other capability rules.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio.lowlevel
import attrs
import pytest

from executors import default_registry
from executors.testing.conformance import BackendConformance, rule
from executors.testing.conformance import _suite as suite_module
from tests.test_broken_backends import (
    BrokenBackend,
    Case,
    Faithful,
    _failure_of,
    _Suite,
    _suite_on,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from executors import Capabilities, Job, JobOutcome

EX_13 = rule("EX-13")


@pytest.fixture(autouse=True)
def _short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken backend makes the rule wait this long per host and kind of entrypoint;
    # a job handed over to a warm thread begins within microseconds.
    monkeypatch.setattr(suite_module, "HANDED_OVER_WITHIN", 1.0)


class HandsOverLate(Faithful):
    """Declares ``hands_over_at_once`` (its inner thread backend does), but its
    ``run_job`` first waits on the host's loop, and hands the job over only after."""

    async def run_job(self, job: Job) -> JobOutcome:
        await anyio.lowlevel.checkpoint()
        return await self.inner.run_job(job)


@attrs.define(eq=False)
class Declaring(BrokenBackend):
    """A real backend, wrapped, that declares ``hands_over_at_once`` whatever it does."""

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(self.inner.capabilities, hands_over_at_once=True)


@contextlib.contextmanager
def _declaring_suite_on(inner_name: str) -> Iterator[BackendConformance]:
    inner = default_registry().backend(inner_name)
    backend = Declaring(f"declaring-{inner_name}", inner, Faithful)
    suite = type("DeclaringSuite", (_Suite,), {"broken": backend})()
    suite.prepare(backend.name, "quick")
    yield suite


def test_a_run_job_that_waits_before_it_hands_the_job_over_fails_the_rule() -> None:
    with _suite_on(Case(HandsOverLate, "thread", "EX-13"), HandsOverLate) as suite:
        assert suite.capabilities.hands_over_at_once, "the broken backend must claim it"
        failure = _failure_of(getattr(suite, EX_13.test_name))
    assert f"{EX_13.id} {EX_13.name}: " in failure
    assert "on asyncio," in failure
    assert "run_job had not handed it over" in failure


def test_a_backend_that_runs_the_job_on_the_host_loop_fails_the_rule() -> None:
    # The coroutine backend runs each job in its caller's task: it must not declare it.
    with _declaring_suite_on("coroutine") as suite:
        failure = _failure_of(getattr(suite, EX_13.test_name))
    assert f"{EX_13.id} {EX_13.name}: " in failure
    assert "the job ran in the pool's own thread" in failure


def test_the_same_wrapper_unbroken_passes() -> None:
    with _suite_on(Case(HandsOverLate, "thread", "EX-13"), Faithful) as suite:
        getattr(suite, EX_13.test_name)()
