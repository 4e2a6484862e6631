"""The conformance suite catches broken backends.

Each broken backend is one realistic change to a real backend (process, thread or
coroutine): a wrapper around its executors that breaks one promise the way a backend
author could, or one method of the backend itself replaced by a version with a bug in
it (``patch``). The suite must fail on it, by the rule meant to catch that promise,
naming the rule, and within the deadline it gave the rule: never hang. The same wrapper
with nothing broken passes the same rule (and each real backend passes every rule:
``test_conformance.py``), so the failure comes from the defect.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs
import psutil
import pytest

from executors import (
    ExecutorState,
    FailureReason,
    Health,
    JobOutcome,
    LaunchError,
    Registry,
    RemoteError,
    default_registry,
)
from executors.testing._leaks import interpreter_helpers
from executors.testing.conformance import BackendConformance, rule
from executors.testing.conformance._guard import abandoned_loops

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from executors import Backend, Capabilities, ExecutorFactory, Job, JobExecutor, PoolConfig


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


class RunsWhenNotReady(Faithful):
    """Forgets the READY guard: runs a job whatever its state (before start(), once
    closed)."""

    async def run_job(self, job: Job) -> JobOutcome:
        if self.inner.state is not ExecutorState.READY:
            self.inner.state = ExecutorState.READY  # type: ignore[misc]
        return await self.inner.run_job(job)


class AcceptsWhileBusy(Faithful):
    """Its guard refuses only a closed slot: a second job runs beside the first."""

    async def run_job(self, job: Job) -> JobOutcome:
        if self.inner.state is ExecutorState.BUSY:
            self.inner.state = ExecutorState.READY  # type: ignore[misc]
        return await self.inner.run_job(job)


class StateNeverBusy(Faithful):
    """Reports READY while a job runs (its state is set once, at start)."""

    @property
    def state(self) -> ExecutorState:
        state = self.inner.state
        return ExecutorState.READY if state is ExecutorState.BUSY else state


class BreaksAfterRaise(Faithful):
    """Leaves the slot BUSY after a job that raised: the error path forgets to free it."""

    async def run_job(self, job: Job) -> JobOutcome:
        outcome = await self.inner.run_job(job)
        if outcome.reason is FailureReason.RAISED:
            self.inner.state = ExecutorState.BUSY  # type: ignore[misc]
        return outcome


class ExitedOnlyOnCrash(Faithful):
    """Its wait_exited() reports only the deaths it did not cause: once the slot has
    been closed or killed, it waits for a crash that never comes."""

    closed: bool = False

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()

    async def kill(self) -> None:
        self.closed = True
        await self.inner.kill()

    async def wait_exited(self) -> None:
        await self.inner.wait_exited()  # type: ignore[attr-defined]
        if self.closed:
            await anyio.sleep_forever()


#: scopes the broken backends shield themselves with, and the loop of each; the test
#: cancels them once the rule has failed, so that nothing it abandoned runs on
_SHIELDS: list[tuple[anyio.CancelScope, object]] = []


def _shield() -> anyio.CancelScope:
    scope = anyio.CancelScope(shield=True)
    _SHIELDS.append((scope, anyio.lowlevel.current_token()))
    return scope


class ShieldedRunJob(Faithful):
    """Shields its run from cancellation, so that no job is ever interrupted half-way:
    a cancelled or timed-out run_job waits for its job to end."""

    async def run_job(self, job: Job) -> JobOutcome:
        with _shield():
            outcome = await self.inner.run_job(job)
        return outcome


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
    #: replaces one method of the real backend for the test (``monkeypatch``), instead
    #: of (or besides) the wrapper
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    #: what is broken, in the docs' words; the name when it is a patch
    what: str = ""
    label: str = ""
    #: checked in a process of its own: the checker abandons what the backend holds,
    #: which would stay in this one
    isolated: bool = False

    @property
    def name(self) -> str:
        return self.label or self.wrapper.__name__


def patched(
    name: str, inner: str, rule_id: str, what: str
) -> Callable[[Callable[[pytest.MonkeyPatch], None]], Case]:
    """A case made of a function that patches the real backend ``inner``."""

    def make(patch: Callable[[pytest.MonkeyPatch], None]) -> Case:
        return Case(Faithful, inner, rule_id, patch=patch, what=what, label=name)

    return make


# -- one method of a real backend, with a bug ---------------------------------------------


@patched(
    "StartLeavesStarting",
    "coroutine",
    "SL-1",
    "start() runs the setup but never reports the slot READY",
)
def _start_leaves_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors._clock import checkpoint_function
    from executors_coroutine._backend import CoroutineExecutor

    async def start(self: CoroutineExecutor) -> None:
        self._checkpoint = checkpoint_function()
        self._setup_state = await self._setup.get()

    monkeypatch.setattr(CoroutineExecutor, "start", start)


@patched(
    "NeverYields",
    "coroutine",
    "SL-14",
    "run_job() awaits the job and nothing else: a job that never awaits runs without "
    "the loop getting a turn",
)
def _never_yields(monkeypatch: pytest.MonkeyPatch) -> None:
    import executors_coroutine._backend

    async def nothing() -> None:
        pass

    monkeypatch.setattr(executors_coroutine._backend, "checkpoint_function", lambda: nothing)


@patched(
    "ShieldedStartForever",
    "coroutine",
    "SL-7",
    "start() shields its setup from cancellation, so a setup that hangs hangs start()",
)
def _shielded_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors._clock import checkpoint_function
    from executors_coroutine._backend import CoroutineExecutor

    async def start(self: CoroutineExecutor) -> None:
        self._checkpoint = checkpoint_function()
        with _shield():
            self._setup_state = await self._setup.get()
        if self.state is ExecutorState.STARTING:
            self.state = ExecutorState.READY

    monkeypatch.setattr(CoroutineExecutor, "start", start)


@patched(
    "CancelLeavesJobRunning",
    "thread",
    "SL-6",
    "a cancelled run_job asks its job to stop but returns without waiting: the job runs "
    "on after its outcome",
)
def _cancel_leaves_job_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_thread._backend import ThreadExecutor, _Run

    async def _stop_job(self: ThreadExecutor, run: _Run) -> None:
        self._request_cancel(run)
        if self.state is ExecutorState.BUSY:
            self.state = ExecutorState.READY

    monkeypatch.setattr(ThreadExecutor, "_stop_job", _stop_job)


@patched(
    "UnboundedStop",
    "thread",
    "EX-16",
    "a cancelled run_job waits for its job without close_timeout: a job that ignores "
    "cancellation holds it past every bound",
)
def _unbounded_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_thread._backend import ThreadExecutor, _Run

    async def _stop_job(self: ThreadExecutor, run: _Run) -> None:
        self._request_cancel(run)
        with anyio.CancelScope(shield=True):
            await run.done.wait()
        if self.state is ExecutorState.BUSY:
            self.state = ExecutorState.READY

    monkeypatch.setattr(ThreadExecutor, "_stop_job", _stop_job)


@patched(
    "BaseExceptionLost",
    "thread",
    "SL-5",
    "a sync job that raises GeneratorExit or another BaseException ends the executor's "
    "thread, and its run_job never returns",
)
def _base_exception_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_thread._backend import ThreadExecutor, _Run

    def _run_sync(self: ThreadExecutor, run: _Run) -> None:
        try:
            value = self._entrypoint(run.context or self._context(run))
            outcome = JobOutcome.success(run.job_id, value)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            error = RemoteError.from_exception(exc)
            outcome = JobOutcome.failure(run.job_id, FailureReason.RAISED, error)
        self._report(run, outcome)

    monkeypatch.setattr(ThreadExecutor, "_run_sync", _run_sync)


@patched(
    "TimeoutLeavesJobRunning",
    "process",
    "SL-6",
    "a cancelled run_job marks the slot READY instead of killing the worker, which runs the job on",
)
def _timeout_leaves_job_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor, describe_exit
    from executors_process._protocol import encode

    async def run_job(self: ProcessExecutor, job: Job) -> JobOutcome:
        # ProcessExecutor.run_job, but for the cancellation branch (marked)
        if self.state is not ExecutorState.READY:
            msg = f"executor {self.id} cannot take job {job.id}: it is {self.state.value}"
            raise LaunchError(msg)
        frame = encode(("job", job.id, job.payload))
        assert isinstance(frame, bytes), "the rules' payloads are small"
        self.state = ExecutorState.BUSY
        try:
            sent = self._send_now(frame)
            if sent < len(frame):
                await self._deliver(job.id, memoryview(frame)[sent:])
            reply = await self._reply()
            if reply is None:
                await self._exited.wait()
        except BaseException:
            self.state = ExecutorState.READY  # the bug: instead of killing the worker
            raise
        if reply is None and self._unread:
            msg = f"{self._where()} died before it read job {job.id} ({describe_exit(None)})"
            raise LaunchError(msg)
        return self._outcome(job, reply)

    monkeypatch.setattr(ProcessExecutor, "run_job", run_job)


@patched(
    "LaunchErrorAfterStart",
    "process",
    "EX-3",
    "a worker that died running a job is reported as a refused launch (LaunchError), so "
    "the pool runs the job again",
)
def _launch_error_after_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    original = ProcessExecutor._outcome

    def _outcome(self: ProcessExecutor, job: Job, reply: Any) -> JobOutcome:
        if reply is None:
            msg = f"{self._where()} died: run job {job.id} elsewhere"
            raise LaunchError(msg)
        return original(self, job, reply)

    monkeypatch.setattr(ProcessExecutor, "_outcome", _outcome)


@patched(
    "AlwaysAlive",
    "process",
    "EX-12",
    "health() says alive while the worker has a process object, dead or not, and there "
    "is no wait_exited(): a dead idle executor is never replaced",
)
def _always_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    def health(self: ProcessExecutor) -> Health:
        return Health(alive=self._process is not None, ping_latency=self._ping_latency())

    monkeypatch.setattr(ProcessExecutor, "health", health)
    monkeypatch.delattr(ProcessExecutor, "wait_exited")


@patched(
    "PingNeverStale",
    "process",
    "SL-12",
    "health().ping_latency is the last answered ping's round trip: a worker that stops "
    "answering keeps its last good figure",
)
def _ping_never_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    def _ping_latency(self: ProcessExecutor) -> float | None:
        return self._last_rtt

    monkeypatch.setattr(ProcessExecutor, "_ping_latency", _ping_latency)


@patched(
    "MemoryOfTheHost",
    "process",
    "EX-14",
    "health().memory_mb measures the host's process, not the worker's: memory limits "
    "are never enforced",
)
def _memory_of_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    def memory_mb(self: ProcessExecutor) -> float | None:
        return float(psutil.Process().memory_full_info().uss) / (1024 * 1024)

    monkeypatch.setattr(ProcessExecutor, "memory_mb", memory_mb)


@patched(
    "CloseOnlyByKill",
    "process",
    "EX-15",
    "aclose() waits for the worker to exit without telling it to: it only ends through "
    "the pool's kill() after close_timeout",
)
def _close_only_by_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    async def aclose(self: ProcessExecutor) -> None:
        if self._process is None or self._exited.is_set():
            await self.kill()
            return
        self.state = ExecutorState.CLOSING
        await self._exited.wait()
        self._finish()

    monkeypatch.setattr(ProcessExecutor, "aclose", aclose)


@patched(
    "BreaksAfterManyJobs",
    "process",
    "SL-9",
    "the worker leaves after 100 jobs (as a max-jobs-per-worker setting would) without "
    "the slot saying so: it reports READY, and the next job fails",
)
def _breaks_after_many_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    original = ProcessExecutor._outcome
    served: collections.Counter[str] = collections.Counter()

    def _outcome(self: ProcessExecutor, job: Job, reply: Any) -> JobOutcome:
        outcome = original(self, job, reply)
        served[self.id] += 1
        if served[self.id] == 100 and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        return outcome

    monkeypatch.setattr(ProcessExecutor, "_outcome", _outcome)


@patched(
    "KillNotIdempotent",
    "process",
    "SL-8",
    "kill() signals the worker's pid before anything else: once the worker is gone, a "
    "second kill() raises ProcessLookupError",
)
def _kill_not_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    from executors_process._executor import ProcessExecutor

    original = ProcessExecutor.kill

    async def kill(self: ProcessExecutor) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        await original(self)

    monkeypatch.setattr(ProcessExecutor, "kill", kill)


CASES = [
    Case(LeaksOnClose, "process", "EX-5", what="aclose() and kill() leave the worker running"),
    Case(StaleOutcome, "coroutine", "EX-1", what="answers each job with the outcome of the last"),
    Case(
        SidecarLeak,
        "coroutine",
        "EX-10",
        what="a helper process started by start() outlives a cancelled start",
    ),
    Case(CrashAsSuccess, "process", "EX-6", what="reports a crashed job as a success"),
    Case(
        IgnoresKill,
        "process",
        "EX-7",
        what="declares kills, but lets every job run to its end",
        isolated=True,
    ),
    Case(
        HangsOnSetupFailure,
        "coroutine",
        "EX-2",
        what="swallows the setup's exception and never finishes starting",
    ),
    Case(RunsWhenNotReady, "coroutine", "SL-3", what="runs a job before start() and once closed"),
    Case(AcceptsWhileBusy, "coroutine", "SL-4", what="runs a second job beside the first"),
    Case(StateNeverBusy, "thread", "SL-4", what="reports READY while a job runs"),
    Case(BreaksAfterRaise, "coroutine", "SL-5", what="stays BUSY after a job that raised"),
    Case(ShieldedRunJob, "coroutine", "SL-6", what="shields run_job from cancellation"),
    Case(
        ExitedOnlyOnCrash,
        "process",
        "SL-1",
        what="wait_exited() never returns once the slot was closed",
    ),
    _start_leaves_starting,
    _never_yields,
    _shielded_start,
    _cancel_leaves_job_running,
    _unbounded_stop,
    _base_exception_lost,
    _timeout_leaves_job_running,
    _launch_error_after_start,
    _always_alive,
    _ping_never_stale,
    _memory_of_the_host,
    _close_only_by_kill,
    _breaks_after_many_jobs,
    _kill_not_idempotent,
]


class _Suite(BackendConformance):
    broken: ClassVar[BrokenBackend]
    shrink = False  # that a rule fails is the point here, not the minimal example
    #: settings every pool and executor of the suite gets
    settings: ClassVar[dict[str, Any]] = {}

    def config(self, **overrides: Any) -> PoolConfig:
        return super().config(**{**self.settings, **overrides})

    def registry(self) -> Registry:
        registry = Registry.empty()
        registry.add_backend(self.broken)
        return registry


@contextlib.contextmanager
def _suite_on(
    case: Case,
    wrapper: type[Faithful],
    monkeypatch: pytest.MonkeyPatch | None = None,
    **settings: Any,
) -> Iterator[_Suite]:
    """The suite aimed at ``case.inner`` wrapped in ``wrapper`` (and patched, with
    ``monkeypatch``); whatever the backend left running is ended afterwards."""
    try:
        inner = default_registry().backend(case.inner)
    except LookupError:
        pytest.skip(f"backend {case.inner!r} is not installed")
    if monkeypatch is not None and case.patch is not None:
        case.patch(monkeypatch)
    backend = BrokenBackend(f"broken-{case.name.lower()}", inner, wrapper)
    suite_class = type(f"{case.name}Suite", (_Suite,), {"broken": backend, "settings": settings})
    suite = suite_class()
    suite.prepare(backend.name, "ci")  # the state machines and the wear rule try harder
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    abandoned = len(abandoned_loops())
    try:
        yield suite
    finally:
        _release_what_was_abandoned(suite, abandoned)
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
            suite.watched.factories.clear()
            gc.collect()


def _release_what_was_abandoned(suite: _Suite, before: int) -> None:
    """The checker gave up on loops held by a backend that shields itself: cancel its
    shields and kill its executors (the real ones under the wrappers), so that the
    calls return and the loops, told to stop, end."""
    shields, _SHIELDS[:] = list(_SHIELDS), []
    for scope, token in shields:
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(scope.cancel, token=token)  # type: ignore[arg-type]
    loops = abandoned_loops()[before:]
    kills = []
    for watched in suite.watched.executors().values():
        executor = watched.inner
        while isinstance(executor, Faithful):
            executor = executor.inner
        kills.append(executor.kill)
    for loop in loops:
        loop.release(*kills)
    for loop in loops:
        # A backend whose own tasks were cancelled with the rule may never let go: its
        # loop's thread then stays (no_leaks() knows it was abandoned on purpose).
        loop.join(5.0)


def _end_new_children(before: set[int]) -> None:
    """Kill the processes started since ``before`` that are still there, and reap them."""
    helpers = interpreter_helpers().pids
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


def check_case(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float, float]:
    """Run the rule of the case called ``name`` on its broken backend: its failure
    message, the seconds it took and the deadline the suite gave the rule."""
    case = next(case for case in CASES if case.name == name)
    checked = rule(case.rule_id)
    with _suite_on(case, case.wrapper, monkeypatch) as suite:
        started = time.monotonic()
        failure = _failure_of(getattr(suite, checked.test_name))
        return failure, time.monotonic() - started, suite.deadline


_ISOLATED = """
import json, os, sys
import pytest
from tests.test_broken_backends import check_case
print(json.dumps(check_case(sys.argv[1], pytest.MonkeyPatch())), flush=True)
os._exit(0)  # whatever the checker abandoned goes with the process
"""


# A broken backend may let a job's exception end one of its threads.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.name}-{case.rule_id}")
def test_suite_fails_naming_the_rule(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = rule(case.rule_id)
    if case.isolated:
        root = Path(__file__).parents[1]
        result = subprocess.run(
            [sys.executable, "-c", _ISOLATED, case.name],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            cwd=root,
        )
        failure, took, deadline = json.loads(result.stdout.splitlines()[-1])
    else:
        failure, took, deadline = check_case(case.name, monkeypatch)
    assert f"{checked.id} {checked.name}: " in failure
    # It fails within the deadline the suite gave the rule (its overhead aside): no hang.
    assert took <= deadline + 5.0, f"{checked.id} took {took:.1f}s > {deadline:.1f}s"


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if case.patch is None],
    ids=lambda case: f"{case.inner}-{case.rule_id}",
)
def test_the_same_wrapper_unbroken_passes(case: Case) -> None:
    checked = rule(case.rule_id)
    with _suite_on(case, Faithful) as suite:
        getattr(suite, checked.test_name)()


def test_twenty_kinds_of_broken_backend_each_caught_by_its_rule() -> None:
    assert len(CASES) >= 20
    assert len({case.name for case in CASES}) == len(CASES)
    # every kind of rule catches something: on bare executors and through a pool
    assert {rule(case.rule_id).level for case in CASES} == {"slot", "pool"}
    assert len({case.rule_id for case in CASES}) >= 18


def test_the_docs_list_every_broken_backend() -> None:
    page = (Path(__file__).parents[1] / "docs" / "conformance.md").read_text()
    for case in CASES:
        assert f"`{case.name}`" in page, case.name


@pytest.mark.parametrize("recorded", [True, False])
def test_a_failure_hypothesis_cannot_replay_is_reported_as_the_rule(
    monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    """A real pool runs in real time, so Hypothesis' replay of a failing run may stop at
    another step and Hypothesis reports the replay as flaky. EX-1 reports the failure it
    saw first instead; a flaky report with no failure behind it fails the rule too."""
    import hypothesis.stateful
    from hypothesis.errors import FlakyStrategyDefinition

    def replay_differs(machine: type[Any], **_: object) -> None:
        if recorded:
            machine.first_failure = "EX-1 exactly_one_outcome: invariant one_outcome_per_job: x"
        raise FlakyStrategyDefinition("Inconsistent data generation!")

    monkeypatch.setattr(hypothesis.stateful, "run_state_machine_as_test", replay_differs)
    suite = BackendConformance()
    suite.prepare("coroutine", "quick")
    with pytest.raises(AssertionError) as raised:
        suite.test_ex_1_exactly_one_outcome()
    if recorded:
        assert str(raised.value).startswith("EX-1 exactly_one_outcome: invariant one_outcome")
    else:  # still the rule's failure, saying what Hypothesis said
        assert str(raised.value).startswith("EX-1 exactly_one_outcome: FlakyStrategyDefinition")
