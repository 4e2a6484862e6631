"""``BackendConformance``: the conformance tests, one per rule, on real pools."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import anyio
import anyio.lowlevel
import attrs
import pytest

from ..._clock import on_asyncio
from ..._config import PoolConfig
from ..._exceptions import AcquireError, JobFailed, PoolClosed
from ..._hookspecs import hookimpl
from ..._job import FailureReason, JobStatus
from ..._plugins import default_registry
from ..._pool import open_pool
from .._leaks import no_leaks
from .._program import Recorder
from ._rules import Rule, rule

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterator
    from contextlib import AbstractAsyncContextManager

    from ..._executor import Capabilities
    from ..._job import Job, JobOutcome
    from ..._plugins import Registry
    from ..._pool import Pool

T = TypeVar("T")
Profile = Literal["quick", "ci", "thorough"]
PROFILES: tuple[Profile, ...] = ("quick", "ci", "thorough")
#: per profile: how many pools rule EX-1's state machine drives, and steps on each
_EXAMPLES = {"quick": (12, 20), "ci": (40, 30), "thorough": (200, 50)}
#: seconds anything that should be quick may take before a rule fails instead of hanging
PATIENCE = 30.0
#: seconds a drain may take past drain_timeout + close_timeout
DRAIN_MARGIN = 3.0
_JOBS = "executors.testing.jobs"


def base_config(backend: str, capabilities: Capabilities, **overrides: Any) -> PoolConfig:
    """The pool configuration every rule starts from: a small pool on ``backend`` with
    short timeouts and backoffs, running ``echo`` (async where the backend can)."""
    entrypoint = "aecho" if capabilities.async_entrypoints else "echo"
    settings: dict[str, Any] = {
        "backend": backend,
        "entrypoint": f"{_JOBS}:{entrypoint}",
        "idle_executors": 1,
        "max_executors": 2,
        "close_timeout": 2.0,
        "drain_timeout": 2.0,
        "spawn_backoff": 0.01,
        "spawn_backoff_max": 0.05,
    }
    settings.update(overrides)
    return PoolConfig(**settings)


@contextlib.contextmanager
def _checking(checked: Rule) -> Iterator[None]:
    """Prefix any assertion failing inside with the rule's id and name."""
    try:
        yield
    except AssertionError as err:
        if str(err).startswith(checked.id):
            raise
        message = f"{checked.id} {checked.name}: {err}"
        raise AssertionError(message) from err


def _run(function: Callable[[], Awaitable[T]], host: str = "asyncio") -> T:
    return anyio.run(function, backend=host)


class BackendConformance:
    """Subclass it in your backend's tests to prove the backend keeps the pool's promises.

    Set :attr:`backend` to the registered name; override :meth:`config` to add the
    backend's options. Each ``test_<rule>`` method checks one rule of
    :data:`~executors.testing.conformance.RULES` with real pools, and skips rules whose
    required capabilities the backend lacks.
    """

    #: the registered name of the backend under test
    backend: ClassVar[str | None] = None
    #: how hard to try; ``--executors-profile`` overrides it
    profile: ClassVar[Profile] = "quick"
    #: shrink a failing program of rule EX-1 to a minimal one (which can take minutes);
    #: set it false where knowing that a rule fails is enough
    shrink: ClassVar[bool] = True

    backend_name: str
    capabilities: Capabilities
    active_profile: Profile

    @pytest.fixture
    def conformance_backend(self) -> str:
        """The backend under test: :attr:`backend` (subclasses may override this fixture)."""
        if self.backend is None:
            pytest.skip("set the class attribute `backend` to the backend's name")
        return self.backend

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, conformance_backend: str, request: pytest.FixtureRequest) -> None:
        option = request.config.getoption("executors_profile", default=None)
        self.prepare(conformance_backend, option)

    def prepare(self, backend: str, profile: Profile | None = None) -> None:
        """Aim the rules at ``backend`` (with ``profile``, else :attr:`profile`). pytest
        does this through a fixture; call it to run a rule's method outside pytest."""
        registry = self.registry() or default_registry()
        self.backend_name = backend
        self.capabilities = registry.backend(backend).capabilities
        self.active_profile = profile or self.profile

    def config(self, **overrides: Any) -> PoolConfig:
        """The configuration of the pools the rules open; ``overrides`` come from the rule.
        Override it to set backend options, for example
        ``return super().config(backend_options={"loop": "trio"}, **overrides)``."""
        return base_config(self.backend_name, self.capabilities, **overrides)

    def registry(self) -> Registry | None:
        """Where the rules look the backend up: ``None`` for the installed plugins
        (:func:`~executors.default_registry`). Override it to test a backend that is not
        installed, registered with :meth:`Registry.add_backend`."""
        return None

    # -- helpers ------------------------------------------------------------------------

    def _open(self, cfg: PoolConfig, **kwargs: Any) -> AbstractAsyncContextManager[Pool]:
        return open_pool(cfg, registry=self.registry(), **kwargs)

    def _require(self, checked: Rule) -> None:
        for name in checked.requires:
            if not getattr(self.capabilities, name):
                pytest.skip(f"requires capability {name}")

    def _job(self, sync: str, async_: str) -> str:
        """The entrypoint ``async_`` where the backend runs async entrypoints, else ``sync``."""
        return f"{_JOBS}:{async_ if self.capabilities.async_entrypoints else sync}"

    # -- the rules ----------------------------------------------------------------------

    def test_ex_1_exactly_one_outcome(self) -> None:
        from hypothesis import HealthCheck, Phase, settings
        from hypothesis.errors import Flaky
        from hypothesis.stateful import run_state_machine_as_test

        from ._machine import PoolMachine

        checked = rule("EX-1")
        self._require(checked)
        examples, steps = _EXAMPLES[self.active_profile]
        machine = PoolMachine.for_backend(
            self.config,
            self.capabilities,
            registry=self.registry(),
            label=f"{checked.id} {checked.name}",
        )
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=examples,
                    stateful_step_count=steps,
                    phases=[p for p in Phase if self.shrink or p is not Phase.shrink],
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except Flaky as error:
            # A real pool runs in real time: Hypothesis' replay of a failing run may fail
            # a step earlier or later, or stop drawing sooner, and Hypothesis then reports
            # the replay instead of the failure. The failure is what the author needs.
            if machine.first_failure is None:
                raise
            msg = (
                f"{machine.first_failure}\n(Hypothesis could not replay this run exactly, "
                f"as timing differs between runs: {type(error).__name__})"
            )
            raise AssertionError(msg) from error

    def test_ex_2_acquisition_never_hangs(self) -> None:
        checked = rule("EX-2")
        self._require(checked)
        cfg = self.config(
            setup=f"{_JOBS}:setup_raises",
            acquire_attempts=2,
            idle_executors=1,
            max_executors=2,
            # a start() that hangs instead of raising then fails in seconds, as a timeout
            initialize_timeout=3.0,
        )

        async def main() -> None:
            async with self._open(cfg) as pool:
                with _checking(checked):
                    try:
                        with anyio.fail_after(PATIENCE):
                            handles = [await pool.submit(i) for i in range(3)]
                            outcomes = [await handle.outcome() for handle in handles]
                            with pytest.raises(AcquireError) as info:
                                await pool.run(None)
                    except TimeoutError:
                        pytest.fail(
                            f"{checked.id} {checked.name}: jobs still waiting after {PATIENCE}s"
                        )
                    for outcome in outcomes:
                        assert outcome.reason is FailureReason.ACQUIRE_FAILED, (
                            f"expected ACQUIRE_FAILED, got {outcome}"
                        )
                    cause = info.value.__cause__
                    assert type(cause).__name__ == "InjectedFault", (
                        f"AcquireError should be caused by the setup's InjectedFault, not {cause!r}"
                    )

        _run(main)

    def test_ex_3_at_most_once(self) -> None:
        checked = rule("EX-3")
        self._require(checked)
        if self.capabilities.remote:
            pytest.skip("requires a shared file system (the backend is remote)")
        cfg = self.config(
            entrypoint=self._job("count_runs", "acount_runs"),
            drain_timeout=0.2,
            close_timeout=1.0,
            max_executors=2,
        )
        seconds = ["0", "0.02", "0.5", "0", "5", "0.02"]

        async def main(directory: str) -> None:
            recorder = Recorder()
            async with self._open(cfg, observers=[recorder]) as pool:
                handles = [
                    await pool.submit(
                        os.path.join(directory, f"job{i}"), metadata={"seconds": seconds[i]}
                    )
                    for i in range(len(seconds))
                ]
                # cancel while something runs: wait for it, not for a fixed time
                with anyio.fail_after(PATIENCE):
                    await pool.wait_until(lambda s: s.busy >= 1)
                handles[2].cancel()
                with anyio.fail_after(PATIENCE):
                    await pool.drain()
            with _checking(checked):
                for i, handle in enumerate(handles):
                    path = os.path.join(directory, f"job{i}")
                    runs = _lines(path)
                    assert runs <= 1, f"job {handle.id} ran {runs} times"
                    outcome = await handle.outcome()
                    if outcome.status is JobStatus.SUCCEEDED:
                        assert runs == 1, f"job {handle.id} succeeded but ran {runs} times"
                    assert recorder.started[handle.id] <= cfg.launch_attempts

        with tempfile.TemporaryDirectory() as directory:
            _run(lambda: main(directory))

    def test_ex_4_bounded_drain(self) -> None:
        checked = rule("EX-4")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("scripted_sync", "scripted"),
            drain_timeout=0.2,
            close_timeout=1.0,
            max_executors=2,
        )

        async def main() -> None:
            from .._simulated import Script

            recorder = Recorder()
            async with self._open(cfg, observers=[recorder]) as pool:
                handles = [await pool.submit(Script.hang()) for _ in range(2)]
                handles.append(await pool.submit(Script.succeed(1)))
                # drain while both hanging jobs run
                with anyio.fail_after(PATIENCE):
                    await pool.wait_until(lambda s: s.busy >= 2)
                start = anyio.current_time()
                with anyio.fail_after(PATIENCE):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(pool.drain)
                        await anyio.lowlevel.checkpoint()
                        with _checking(checked), pytest.raises(PoolClosed):
                            await pool.submit(Script.succeed(2))
                elapsed = anyio.current_time() - start
            limit = cfg.drain_timeout + cfg.close_timeout + DRAIN_MARGIN
            with _checking(checked):
                assert elapsed <= limit, f"drain took {elapsed:.2f}s > {limit:.2f}s"
                for handle in handles:
                    assert handle.done(), f"{handle.id} has no outcome after drain"
                    assert recorder.finished[handle.id] == 1, (
                        f"{handle.id} reported {recorder.finished[handle.id]} times"
                    )
                assert recorder.ready <= recorder.closed, "an executor outlived the drain"

        _run(main)

    def test_ex_5_no_leaks(self) -> None:
        checked = rule("EX-5")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("scripted_sync", "scripted"),
            drain_timeout=0.1,
            close_timeout=1.0,
            job_timeout=2.0,
        )

        async def main() -> None:
            from .._simulated import Script

            async with self._open(cfg) as pool:
                handles = [
                    await pool.submit(script)
                    for script in (Script.succeed(1), Script.fail(), Script.hang())
                ]
                with anyio.fail_after(PATIENCE):
                    await pool.wait_until(lambda s: s.busy >= 1)
                handles[2].cancel()
                with anyio.fail_after(PATIENCE):
                    await pool.drain()

        # Hosted on trio: anyio's asyncio worker threads (anyio.to_thread) outlive their
        # loop by a moment, trio's cached ones are known to no_leaks().
        with _checking(checked), no_leaks():
            _run(main, host="trio")

    def test_ex_6_crash_isolation(self) -> None:
        checked = rule("EX-6")
        self._require(checked)
        cfg = self.config(entrypoint=self._job("crash", "acrash"), max_executors=2)

        async def main() -> None:
            async with self._open(cfg) as pool:
                with anyio.fail_after(PATIENCE):
                    crashed = await (await pool.submit(3)).outcome()
                    after = await (await pool.submit("still serving")).outcome()
            with _checking(checked):
                assert crashed.reason is FailureReason.CRASHED, f"expected CRASHED, got {crashed}"
                assert after.status is JobStatus.SUCCEEDED, f"the pool stopped serving: {after}"
                assert after.value == "still serving"

        _run(main)

    def test_ex_7_kill_running_job(self) -> None:
        checked = rule("EX-7")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("hang_ignoring_cancel", "ahang"),
            job_timeout=0.5,
            close_timeout=1.0,
        )

        # A kill must stop the job at its timeout, long before it would end by itself.
        limit = cfg.close_timeout + 0.5 + DRAIN_MARGIN
        hang_seconds = 2 * limit

        async def main() -> None:
            async with self._open(cfg) as pool:
                handle = await pool.submit(hang_seconds)
                with anyio.move_on_after(limit):
                    await handle.outcome()
                with _checking(checked):
                    assert handle.done(), f"the job was not stopped within {limit}s"
                    hung = await handle.outcome()
                    assert hung.status is JobStatus.TIMED_OUT, f"expected TIMED_OUT, got {hung}"
                # (its own timeout: starting a job may take longer than the hang's 0.5 s)
                with anyio.fail_after(PATIENCE):
                    follow_up = await pool.submit("still serving", timeout=PATIENCE)
                    after = await follow_up.outcome()
            with _checking(checked):
                assert after.value == "still serving", f"the pool stopped serving: {after}"

        _run(main)

    def test_ex_8_sync_entrypoints(self) -> None:
        self._check_entrypoints(rule("EX-8"), "echo", "raise_error")

    def test_ex_9_async_entrypoints(self) -> None:
        self._check_entrypoints(rule("EX-9"), "aecho", "araise_error")

    def _check_entrypoints(self, checked: Rule, echo: str, raising: str) -> None:
        self._require(checked)
        payload = {"numbers": [1, 2, 3], "text": "é"}

        async def outcome_of(entrypoint: str, value: object) -> JobOutcome:
            async with self._open(self.config(entrypoint=f"{_JOBS}:{entrypoint}")) as pool:
                with anyio.fail_after(PATIENCE):
                    return await (await pool.submit(value)).outcome()

        async def main() -> None:
            echoed = await outcome_of(echo, payload)
            failed = await outcome_of(raising, "boom")
            with _checking(checked):
                assert echoed.status is JobStatus.SUCCEEDED, f"{echo} did not succeed: {echoed}"
                assert echoed.value == payload, f"{echo} returned {echoed.value!r}"
                assert failed.reason is FailureReason.RAISED, f"expected RAISED, got {failed}"
                assert failed.error is not None, "a raising job's outcome carries no error"
                assert failed.error.type_name.endswith("InjectedFault"), failed.error
                assert failed.error.message == "boom", failed.error

        _run(main)

    def test_ex_10_cancelled_start_leaves_nothing(self) -> None:
        checked = rule("EX-10")
        self._require(checked)
        if self.capabilities.async_entrypoints:
            setup = "asetup_hangs"  # waits until cancelled
        elif self.capabilities.can_kill_running_job:
            setup = "setup_hangs"  # sleeps 5 s: only a kill stops it sooner
        else:
            pytest.skip("requires async_entrypoints or can_kill_running_job (to stop a setup)")
        cfg = self.config(
            setup=f"{_JOBS}:{setup}",
            idle_executors=1,
            max_executors=2,
            initialize_timeout=0.5,
            acquire_attempts=2,
            drain_timeout=0.1,
            close_timeout=1.0,
        )

        async def main() -> JobOutcome:
            async with self._open(cfg) as pool:
                # every start() is cancelled by initialize_timeout...
                with anyio.fail_after(PATIENCE):
                    outcome = await (await pool.submit("never runs")).outcome()
                # ...and then one by the drain
                with anyio.fail_after(PATIENCE):
                    await pool.wait_until(lambda s: s.starting >= 1)
                with anyio.fail_after(PATIENCE):
                    await pool.drain()
            return outcome

        with _checking(checked), no_leaks():
            outcome = _run(main, host="trio")
        with _checking(checked):
            assert outcome.reason is FailureReason.ACQUIRE_FAILED, (
                f"expected ACQUIRE_FAILED, got {outcome}"
            )

    def test_ex_11_cheap_kill_at_drain(self) -> None:
        checked = rule("EX-11")
        self._require(checked)
        self._check_drain_ends_run(
            checked,
            (self._job("scripted_sync", "scripted"),),
            _Stopper(how="kill() of {executor}", sender="the kill"),
        )

    def test_ex_12_cancel_by_task_at_drain(self) -> None:
        checked = rule("EX-12")
        self._require(checked)
        # Each kind of entrypoint the backend runs: run_job may wait for a sync job (in
        # a thread, which polls cancel_requested) otherwise than for an async one, and
        # must meet the cancellation of its caller's task at either await.
        entrypoints = [
            f"{_JOBS}:{name}"
            for name, runs in (
                ("scripted", self.capabilities.async_entrypoints),
                ("scripted_sync", self.capabilities.sync_entrypoints),
            )
            if runs
        ]
        if not entrypoints:
            pytest.skip("requires sync_entrypoints or async_entrypoints")
        self._check_drain_ends_run(
            checked,
            tuple(entrypoints),
            _Stopper(how="the cancellation of its caller's task", sender="the pool"),
        )

    def test_ex_13_hands_over_at_once(self) -> None:
        checked = rule("EX-13")
        self._require(checked)
        caps = self.capabilities
        # Where the pool hands a run() job over first: runs without a cancel scope.
        hosts = [
            host
            for host in ("asyncio", "trio")
            if (caps.cheap_kill and caps.can_kill_running_job)
            or (caps.cancel_by_task and host == "asyncio")
        ]
        if not hosts:
            pytest.skip("requires cheap_kill with can_kill_running_job, or cancel_by_task")
        entrypoints = [
            f"{_JOBS}:{name}"
            for name, runs in (
                ("areport_start", caps.async_entrypoints),
                ("report_start", caps.sync_entrypoints),
            )
            if runs
        ]
        if not entrypoints:
            pytest.skip("requires sync_entrypoints or async_entrypoints")
        with tempfile.TemporaryDirectory() as directory:
            for host in hosts:
                for entrypoint in entrypoints:
                    path = os.path.join(directory, "started")
                    seen = _run(functools.partial(self._start_seen, entrypoint, path), host)
                    with _checking(checked):
                        seen.check(f"on {host}, {entrypoint.rpartition(':')[2]}:")

    async def _start_seen(self, entrypoint: str, path: str) -> _StartSeen:
        """Rule EX-13 on one host: run one job reporting its start to ``path`` with
        the pool's loop held in the job's executors_job_started hook."""
        seen = _StartSeen(host=f"{os.getpid()} {threading.get_ident()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            try:
                sock.settimeout(HANDED_OVER_WITHIN)
                seen.sock = sock
                cfg = self.config(entrypoint=entrypoint, idle_executors=1)
                async with self._open(cfg, observers=[seen]) as pool:
                    with anyio.fail_after(PATIENCE):
                        await pool.wait_until(lambda s: s.idle >= 1 and s.starting == 0)
                        seen.value = await pool.run(path)
            finally:
                seen.sock = None
                os.unlink(path)
        return seen

    def _check_drain_ends_run(
        self, checked: Rule, entrypoints: tuple[str, ...], stopper: _Stopper
    ) -> None:
        """Rules EX-11 and EX-12: a run() job without a timeout, which holds no cancel
        scope of the pool's on such a backend, still running when a drain's drain_timeout
        ends, ends once, POOL_CLOSED, by ``stopper`` alone; a run() job with a timeout,
        which keeps its scope, still times out. Checked for each of ``entrypoints`` (jobs
        that hang until they are stopped), on asyncio and on trio."""
        timeout = 0.5
        close_timeout = 1.0
        drain_timeout = 0.2
        # The timed job must be stopped at its timeout, long before the rule gives up.
        timed_limit = timeout + close_timeout + DRAIN_MARGIN
        drain_limit = drain_timeout + close_timeout + DRAIN_MARGIN

        async def main(cfg: PoolConfig) -> _EndedAtDrain:
            from .._simulated import Script

            seen = _EndedAtDrain()
            recorder, launches = seen.recorder, _Launches()

            async def caller(pool: Pool) -> None:
                before = _cancelling()
                try:
                    seen.untimed = await _outcome_of_run(pool, Script.hang())
                    seen.cancelling = (before, _cancelling())
                    # and the caller goes on after run(), as after any failed job
                    await anyio.lowlevel.checkpoint()
                except anyio.get_cancelled_exc_class():
                    if seen.caller_cancelled_by_rule:
                        raise
                    # A cancellation of the caller's task (Task.cancel() on asyncio)
                    # that was not taken back. Noted and ended here: the rule goes on.
                    seen.caller_cancelled = True

            async with self._open(cfg, observers=[recorder, launches]) as pool:
                with anyio.fail_after(PATIENCE):
                    await pool.wait_until(lambda s: s.idle >= 1)
                with anyio.move_on_after(timed_limit) as gave_up:
                    seen.timed = await _outcome_of_run(pool, Script.hang(), timeout=timeout)
                seen.timed_stopped = not gave_up.cancelled_caught
                timed_jobs = set(launches.executor_of)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(caller, pool)
                    # Once launched, its caller is in run_job() (nothing awaits between
                    # the hook and the call), where the job hangs until it is stopped:
                    # it still runs when the drain's drain_timeout ends.
                    with anyio.fail_after(PATIENCE):
                        seen.job_id, seen.executor_id = await launches.first_not_in(timed_jobs)
                    start = anyio.current_time()
                    with anyio.fail_after(PATIENCE):
                        await pool.drain()
                    seen.drain_seconds = anyio.current_time() - start
                    seen.outcomes_at_drain_end = recorder.finished[seen.job_id]
                    if not seen.outcomes_at_drain_end:
                        # The job ran on past its stop: cancel its caller, so that the
                        # rule ends and reports it.
                        seen.caller_cancelled_by_rule = True
                        tg.cancel_scope.cancel()
            return seen

        for entrypoint in entrypoints:
            cfg = self.config(
                entrypoint=entrypoint,
                # Only the job that asks for a timeout has one: the other holds no
                # cancel scope of the pool's, and only the stopper can end it.
                job_timeout=None,
                drain_timeout=drain_timeout,
                close_timeout=close_timeout,
                idle_executors=1,
                max_executors=2,
            )
            for host in ("asyncio", "trio"):
                # The leaks are checked with the pool hosted on trio, as for EX-5 and
                # EX-10; asyncio runs the stop too (where a backend may cancel, or the
                # pool does cancel, the caller's task).
                leaks = no_leaks() if host == "trio" else contextlib.nullcontext()
                with _checking(checked), leaks:
                    seen = _run(functools.partial(main, cfg), host=host)
                    on = f"on {host}, {entrypoint.rpartition(':')[2]}:"
                    seen.check(on, stopper, timeout, timed_limit, drain_limit)


@attrs.frozen
class _Stopper:
    """What ends a run() job without a timeout at a drain's end, in a rule's messages."""

    #: what should have ended it; ``{executor}`` is replaced by the executor's id
    how: str
    #: what may have cancelled the caller's task (and must have taken that back)
    sender: str


def _cancelling() -> int | None:
    """How many cancellation requests the current asyncio task has (None on trio)."""
    if not on_asyncio():
        return None
    task = asyncio.current_task()
    return None if task is None else task.cancelling()


@attrs.define(eq=False)
class _Launches:
    """An observer: the executor each job was last launched on, with a way to wait for
    a launch (the pool's statistics do not change when a run() job's caller begins it)."""

    executor_of: dict[str, str] = attrs.field(factory=dict)
    _next: anyio.Event | None = attrs.field(init=False, default=None)

    @hookimpl
    def executors_job_started(self, job: Job, executor_id: str) -> None:
        self.executor_of[job.id] = executor_id
        if self._next is not None:
            self._next.set()
            self._next = None

    async def first_not_in(self, known: Collection[str]) -> tuple[str, str]:
        """The first job launched that is not in ``known``, and its executor."""
        while True:
            for job_id, executor_id in self.executor_of.items():
                if job_id not in known:
                    return job_id, executor_id
            self._next = anyio.Event()
            await self._next.wait()


#: seconds a job handed over at once has to begin in, with the pool's loop held
HANDED_OVER_WITHIN = 5.0


@attrs.define
class _StartSeen:
    """What rule EX-13 saw of one job: in its executors_job_started hook, which the
    pool calls after run_job first suspended, it waits for the job's report, holding the
    pool's loop."""

    #: "<pid> <thread id>" of the pool's own thread
    host: str
    #: where the job reports, bound by the rule once its pool is open
    sock: socket.socket | None = None
    #: the job's report ("<pid> <thread id>"), None if none came in time
    report: str | None = None
    hooked: int = 0
    value: object = None

    @hookimpl
    def executors_job_started(self) -> None:
        self.hooked += 1
        if self.sock is not None and self.report is None:
            with contextlib.suppress(TimeoutError):
                self.report = self.sock.recv(256).decode()

    def check(self, on: str) -> None:
        assert self.hooked == 1, f"{on} the job was started {self.hooked} times"
        assert self.report is not None, (
            f"{on} the job had not begun {HANDED_OVER_WITHIN}s after run_job first "
            "suspended, with the pool's loop held: run_job had not handed it over"
        )
        assert self.report != self.host, (
            f"{on} the job ran in the pool's own thread: run_job ran the job's code on "
            "the host's loop before it first suspended"
        )
        assert self.value == "reported", f"{on} the job returned {self.value!r}"


@attrs.define
class _EndedAtDrain:
    """What rule EX-11 or EX-12 saw on one host, checked once its pool has closed."""

    recorder: Recorder = attrs.field(factory=Recorder)
    #: the run() job with a timeout ended before the rule gave up on it
    timed_stopped: bool = False
    #: the outcome its run() raised JobFailed with (None: it returned a value)
    timed: JobOutcome | None = None
    #: the run() job without a timeout, and the executor it ran on
    job_id: str = ""
    executor_id: str = ""
    drain_seconds: float = 0.0
    #: how many outcomes that job had when drain() returned
    outcomes_at_drain_end: int = 0
    #: the outcome its run() raised JobFailed with (None: it returned a value, or its
    #: caller was cancelled)
    untimed: JobOutcome | None = None
    #: the cancellation requests of its caller's task before and after run() (asyncio)
    cancelling: tuple[int | None, int | None] = (None, None)
    #: the rule cancelled its caller (the job ran on after the drain)
    caller_cancelled_by_rule: bool = False
    #: something else cancelled it: a cancellation of its task, not taken back
    caller_cancelled: bool = False

    def check(
        self, on: str, stopper: _Stopper, timeout: float, timed_limit: float, drain_limit: float
    ) -> None:
        how = stopper.how.format(executor=self.executor_id)
        assert self.timed_stopped, (
            f"{on} a run() job with a timeout of {timeout}s was still running after "
            f"{timed_limit:.1f}s: it was not stopped at its timeout"
        )
        assert self.timed is not None, (
            f"{on} a run() job with a timeout, which hangs, returned a value"
        )
        assert self.timed.status is JobStatus.TIMED_OUT, (
            f"{on} a run() job with a timeout: expected TIMED_OUT, got {self.timed}"
        )
        assert self.outcomes_at_drain_end == 1, (
            f"{on} the run() job {self.job_id} without a timeout was still running when the "
            f"drain returned after {self.drain_seconds:.2f}s: {how} did not end it"
        )
        assert self.drain_seconds <= drain_limit, (
            f"{on} drain took {self.drain_seconds:.2f}s > {drain_limit:.2f}s"
        )
        assert not self.caller_cancelled, (
            f"{on} the caller of run() was cancelled, not by the rule: the cancellation "
            f"{stopper.sender} sent to its task was not taken back"
        )
        assert self.untimed is not None, (
            f"{on} run() of a job that hangs returned a value: {how} did not end it "
            "(run_job() returned a success)"
        )
        assert self.untimed.reason is FailureReason.POOL_CLOSED, (
            f"{on} a run() job still running at the end of a drain: expected POOL_CLOSED, "
            f"got {self.untimed}"
        )
        before, after = self.cancelling
        assert before == after, (
            f"{on} the caller's task had {before} cancellation requests before run() and "
            f"{after} after it: the cancellation {stopper.sender} sent to it was not taken back"
        )
        finished = self.recorder.finished[self.job_id]
        assert finished == 1, f"{on} {self.job_id} was reported {finished} times"
        reason = self.recorder.closed_reasons.get(self.executor_id)
        assert reason == "pool_closed", (
            f"{on} {self.executor_id}, whose run() job the drain's end stopped, was reported "
            f"closed {reason or 'never'}, expected pool_closed"
        )
        assert self.recorder.ready <= self.recorder.closed, (
            f"{on} an executor outlived the drain: "
            f"{sorted(self.recorder.ready - self.recorder.closed)}"
        )


async def _outcome_of_run(
    pool: Pool, payload: object, timeout: float | None = None
) -> JobOutcome | None:
    """The outcome ``pool.run()`` raised :class:`JobFailed` with; None if it returned."""
    try:
        await pool.run(payload, timeout=timeout)
    except JobFailed as failed:
        return failed.outcome
    return None


def _lines(path: str) -> int:
    try:
        with open(path) as file:
            return len(file.readlines())
    except FileNotFoundError:
        return 0
