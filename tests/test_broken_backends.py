"""The conformance suite catches broken backends.

Each backend here wraps a real one (process or coroutine) and breaks one promise the way
a real backend could. The suite must fail on it, and its failure must name the rule
broken. The same wrapper with nothing broken passes the same rule: the failure comes
from the defect, not from the wrapping.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import attrs
import psutil
import pytest

from executors import FailureReason, JobOutcome, Registry, default_registry
from executors.testing._leaks import _multiprocessing_helpers
from executors.testing.conformance import BackendConformance, rule

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from executors import Backend, Capabilities, ExecutorFactory, Health, Job, PoolConfig
    from executors._executor import ExecutorState, JobExecutor


@attrs.define(eq=False)
class Faithful:
    """Delegates everything to a real executor: breaks nothing."""

    inner: JobExecutor
    backend: BrokenBackend

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def state(self) -> ExecutorState:
        return self.inner.state

    async def start(self) -> None:
        await self.inner.start()

    async def run_job(self, job: Job) -> JobOutcome:
        return await self.inner.run_job(job)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def kill(self) -> None:
        await self.inner.kill()

    def health(self) -> Health:
        return self.inner.health()


class LeaksOnClose(Faithful):
    """Says it closed, and leaves its worker process running (the test closes it
    afterwards)."""

    async def aclose(self) -> None:
        self.backend.leaked.append(self.inner)

    async def kill(self) -> None:
        self.backend.leaked.append(self.inner)


@attrs.define(eq=False)
class StaleOutcome(Faithful):
    """Answers every job after the first with the outcome of the job before it: one
    outcome reported twice, the other never."""

    previous: JobOutcome | None = None

    async def run_job(self, job: Job) -> JobOutcome:
        outcome = await self.inner.run_job(job)
        stale, self.previous = self.previous, outcome
        return stale or outcome


@attrs.define(eq=False)
class SidecarLeak(Faithful):
    """Starts a helper process before its setup, and stops it only once started: a
    start cancelled while the setup runs leaves the helper behind."""

    sidecar: subprocess.Popen[bytes] | None = None
    started: bool = False

    async def start(self) -> None:
        helper = [sys.executable, "-c", "import time; time.sleep(60)"]
        self.sidecar = subprocess.Popen(helper)  # noqa: ASYNC220 -- starts at once
        self.backend.sidecars.append(self.sidecar)
        await self.inner.start()
        self.started = True

    async def aclose(self) -> None:
        if self.started and self.sidecar is not None:
            self.sidecar.kill()
            self.sidecar.wait()
        await self.inner.aclose()


class CrashAsSuccess(Faithful):
    """Reports a job that crashed its worker as a success with no value."""

    async def run_job(self, job: Job) -> JobOutcome:
        outcome = await self.inner.run_job(job)
        if outcome.reason is FailureReason.CRASHED:
            return JobOutcome.success(job.id, None)
        return outcome


class IgnoresKill(Faithful):
    """Claims it can kill a running job, but lets every job run to its end."""

    async def run_job(self, job: Job) -> JobOutcome:
        with anyio.CancelScope(shield=True):
            outcome = await self.inner.run_job(job)
        return outcome

    async def kill(self) -> None:
        pass


class HangsOnSetupFailure(Faithful):
    """Swallows its setup's exception and never finishes starting."""

    async def start(self) -> None:
        try:
            await self.inner.start()
        except Exception:
            await anyio.sleep_forever()


@attrs.define(eq=False)
class BrokenBackend:
    """A real backend whose executors are wrapped in ``wrapper``."""

    name: str
    inner: Backend
    wrapper: type[Faithful]
    sidecars: list[subprocess.Popen[bytes]] = attrs.field(factory=list)
    leaked: list[JobExecutor] = attrs.field(factory=list)

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def options(self) -> type:
        return self.inner.options

    @contextlib.asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        async with self.inner.open(config, options) as factory:
            yield _Factory(self, factory)


@attrs.define(eq=False)
class _Factory:
    backend: BrokenBackend
    inner: ExecutorFactory

    def create_executor(self, executor_id: str) -> JobExecutor:
        return self.backend.wrapper(self.inner.create_executor(executor_id), self.backend)


@attrs.frozen
class Case:
    wrapper: type[Faithful]
    #: the real backend it wraps
    inner: str
    #: the rule the suite must report broken
    rule_id: str

    @property
    def name(self) -> str:
        return self.wrapper.__name__


CASES = [
    Case(LeaksOnClose, "process", "EX-5"),
    Case(StaleOutcome, "coroutine", "EX-1"),
    Case(SidecarLeak, "coroutine", "EX-10"),
    Case(CrashAsSuccess, "process", "EX-6"),
    Case(IgnoresKill, "process", "EX-7"),
    Case(HangsOnSetupFailure, "coroutine", "EX-2"),
]


class _Suite(BackendConformance):
    broken: ClassVar[BrokenBackend]
    shrink = False  # that a rule fails is the point here, not the minimal example

    def registry(self) -> Registry:
        registry = Registry.empty()
        registry.add_backend(self.broken)
        return registry


@contextlib.contextmanager
def _suite_on(case: Case, wrapper: type[Faithful]) -> Iterator[_Suite]:
    """The suite aimed at ``case.inner`` wrapped in ``wrapper``; whatever the wrapper
    left running is ended (by pid) afterwards."""
    try:
        inner = default_registry().backend(case.inner)
    except LookupError:
        pytest.skip(f"backend {case.inner!r} is not installed")
    backend = BrokenBackend(f"broken-{case.name.lower()}", inner, wrapper)
    suite_class = type(f"{case.name}Suite", (_Suite,), {"broken": backend})
    suite = suite_class()
    suite.prepare(backend.name, "ci")  # EX-1: more programs, a defect is found surely
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        yield suite
    finally:
        for sidecar in backend.sidecars:
            sidecar.kill()
            sidecar.wait()
        _end_new_children(before)
        # The executors left open hold sockets and pipes to workers now gone: forget the
        # dead workers (multiprocessing keeps them until asked) and let it all go quietly.
        multiprocessing.active_children()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            backend.leaked.clear()
            gc.collect()


def _end_new_children(before: set[int]) -> None:
    """Kill the processes started since ``before`` that are still there, and reap them."""
    helpers = _multiprocessing_helpers().pids
    for child in psutil.Process().children(recursive=True):
        if child.pid in before or child.pid in helpers:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
            child.wait(timeout=10)


def _messages(error: BaseException) -> str:
    """The messages of ``error`` and, for a group, of every exception in it."""
    if isinstance(error, BaseExceptionGroup):
        return "\n".join(_messages(inner) for inner in error.exceptions)
    return str(error)


def _failure_of(check: Callable[[], None]) -> str:
    """The messages of what ``check`` failed with (its traceback, which holds the
    pool's objects, is let go before the leftovers are cleaned up)."""
    try:
        check()
    except (AssertionError, pytest.fail.Exception, BaseExceptionGroup) as error:
        return _messages(error)
    pytest.fail("the suite passed on a broken backend")


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.name}-{case.rule_id}")
def test_suite_fails_naming_the_rule(case: Case) -> None:
    checked = rule(case.rule_id)
    with _suite_on(case, case.wrapper) as suite:
        failure = _failure_of(getattr(suite, checked.test_name))
    assert f"{checked.id} {checked.name}: " in failure


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.inner}-{case.rule_id}")
def test_the_same_wrapper_unbroken_passes(case: Case) -> None:
    checked = rule(case.rule_id)
    with _suite_on(case, Faithful) as suite:
        getattr(suite, checked.test_name)()


def test_six_rules_are_proven_to_catch_something() -> None:
    assert len({case.rule_id for case in CASES}) >= 6
    assert len({case.wrapper for case in CASES}) == len(CASES)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_failure_hypothesis_cannot_replay_is_reported_as_the_rule(
    monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    """A real pool runs in real time, so Hypothesis' replay of a failing run may stop at
    another step and Hypothesis reports the replay as flaky. EX-1 reports the failure it
    saw first instead; a flaky report with no failure behind it is passed on as is."""
    import hypothesis.stateful
    from hypothesis.errors import FlakyStrategyDefinition

    def replay_differs(machine: type[Any], **_: object) -> None:
        if recorded:
            machine.first_failure = "EX-1 exactly_one_outcome: invariant one_outcome_per_job: x"
        raise FlakyStrategyDefinition("Inconsistent data generation!")

    monkeypatch.setattr(hypothesis.stateful, "run_state_machine_as_test", replay_differs)
    suite = BackendConformance()
    suite.prepare("coroutine", "quick")
    expected = AssertionError if recorded else FlakyStrategyDefinition
    with pytest.raises(expected) as raised:
        suite.test_ex_1_exactly_one_outcome()
    if recorded:
        assert "invariant one_outcome_per_job: x" in str(raised.value)
        assert "could not replay this run exactly" in str(raised.value)
