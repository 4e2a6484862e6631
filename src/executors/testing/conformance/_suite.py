"""``BackendConformance``: the conformance tests, one per rule, on real pools."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
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
from ..._plugins import Registry, default_registry
from ..._pool import open_pool
from .._leaks import no_leaks
from .._program import Recorder
from ..jobs import Fault
from ..witness import Witness
from . import _slot_rules
from ._guard import WatchedBackend, run_within
from ._rules import Rule, rule
from ._slot import MARGIN, Rig, base_endings, entrypoint_kinds, wait_until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterator
    from contextlib import AbstractAsyncContextManager

    from ..._executor import Capabilities
    from ..._job import Job, JobOutcome
    from ..._pool import Pool
    from ._machine import PoolMachine
    from ._slot_machine import SlotMachine

T = TypeVar("T")
Profile = Literal["quick", "ci", "thorough"]
PROFILES: tuple[Profile, ...] = ("quick", "ci", "thorough")
#: per profile: how many runs the state machines (EX-1, SL-13) try at most, how many steps
#: each, and for how many seconds at most (a run under way when they are up is the last)
MACHINES = {"quick": (12, 20, 3.0), "ci": (40, 30, 15.0), "thorough": (200, 50, 240.0)}
#: seconds a failing run of the thorough profile may be shrunk for
SHRINK_BUDGET = 60.0
#: per profile: how many jobs rule SL-9 runs on one executor, and for how long at most
WEAR = {"quick": (50, 3.0), "ci": (300, 15.0), "thorough": (2000, 120.0)}
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
        "initialize_timeout": 5.0,
        "close_timeout": 2.0,
        "drain_timeout": 2.0,
        "spawn_backoff": 0.01,
        "spawn_backoff_max": 0.05,
    }
    settings.update(overrides)
    return PoolConfig(**settings)


@contextlib.contextmanager
def _checking(checked: Rule) -> Iterator[None]:
    """Prefix any assertion failing inside with the rule's id and name (the first one in
    an exception group: a backend's task group wraps what fails inside it)."""
    try:
        yield
    except (AssertionError, BaseExceptionGroup) as err:
        failed = _first_assertion(err)
        if failed is None:  # a group of what the backend or the pool raised
            message = f"{checked.id} {checked.name}: raised {_describe_group(err)}"
            raise AssertionError(message) from err
        if failed is err and str(err).startswith(checked.id):
            raise
        if str(failed).startswith(checked.id):
            raise failed from err
        message = f"{checked.id} {checked.name}: {failed}"
        raise AssertionError(message) from err
    except Exception as err:  # what a backend raised where nothing should have
        message = f"{checked.id} {checked.name}: {type(err).__name__} raised: {err}"
        raise AssertionError(message) from err


def _describe_group(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe_group(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def _first_assertion(error: BaseException) -> AssertionError | None:
    if isinstance(error, AssertionError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _first_assertion(inner)) is not None:
                return found
    return None


def pool_bound(cfg: PoolConfig, *, starts: int = 1, busy: float = 0.0, drains: int = 1) -> float:
    """Seconds a pool rule may take: ``starts`` rounds of starting executors, ``busy``
    seconds of jobs, ``drains`` drains and closes, and a margin for each."""
    drain = cfg.drain_timeout + cfg.close_timeout
    return starts * cfg.initialize_timeout + busy + drains * drain + (starts + drains) * MARGIN


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
    #: in the thorough profile, shrink the failing run of a state machine (EX-1, SL-13)
    #: to a smaller one, for up to SHRINK_BUDGET seconds; set it false where knowing
    #: that a rule fails is enough
    shrink: ClassVar[bool] = True

    backend_name: str
    capabilities: Capabilities
    active_profile: Profile
    #: the backend under test as the running rule sees it, every call into it logged
    watched: WatchedBackend
    #: seconds the running rule was given in all: its deadline
    deadline: float = 0.0
    #: what the running rule measured, reported by `executors check --json`
    notes: dict[str, object]

    @pytest.fixture
    def conformance_backend(self) -> str:
        """The backend under test: :attr:`backend` (subclasses may override this fixture)."""
        if self.backend is None:
            pytest.skip("set the class attribute `backend` to the backend's name")
        return self.backend

    @pytest.fixture(autouse=True)
    def _conformance_setup(
        self, conformance_backend: str, request: pytest.FixtureRequest
    ) -> Iterator[None]:
        option = request.config.getoption("executors_profile", default=None)
        self.prepare(conformance_backend, option)
        yield
        # Read by `executors check`, which reports each rule's deadline.
        request.node.user_properties.append(("deadline", self.deadline))
        request.node.user_properties.extend(self.notes.items())

    def prepare(self, backend: str, profile: Profile | None = None) -> None:
        """Aim the rules at ``backend`` (with ``profile``, else :attr:`profile`). pytest
        does this through a fixture; call it to run a rule's method outside pytest."""
        registry = self.registry() or default_registry()
        self.backend_name = backend
        self.capabilities = registry.backend(backend).capabilities
        self.active_profile = profile or self.profile
        self.watched = WatchedBackend(registry.backend(backend))
        self.deadline = 0.0
        self.notes = {}

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
        return open_pool(cfg, registry=self._watched_registry(), **kwargs)

    def _watched_registry(self) -> Registry:
        """A registry of the backend under test alone, its calls logged."""
        registry = Registry.empty()
        registry.add_backend(self.watched)
        return registry

    def _run(
        self,
        checked: Rule,
        function: Callable[[], Awaitable[T]],
        *,
        within: float,
        host: str = "asyncio",
    ) -> T:
        """Run ``function()`` on a fresh ``host`` loop, failing ``checked`` if it does not
        end within ``within`` seconds (whatever the backend does)."""
        self.deadline += within
        # A cancelled call has the configured close_timeout to return, and a margin.
        grace = self.config().close_timeout + MARGIN
        with _checking(checked):
            return run_within(
                host, function, within=within, what="the rule", log=self.watched.log, grace=grace
            )

    def _run_witnessed(
        self,
        checked: Rule,
        main: Callable[[Witness], Awaitable[str | None]],
        *,
        within: float,
    ) -> None:
        """:meth:`_run` ``main(witness)``; skip the rule if it returns why it does not
        apply."""
        with Witness() as witness:
            skipped = self._run(checked, functools.partial(main, witness), within=within)
        if skipped:
            pytest.skip(skipped)

    def _closed_gracefully(self, checked: Rule) -> None:
        """Every aclose() the pool called returned on its own: none needed the pool's
        kill() fallback after close_timeout."""
        with _checking(checked):
            for call in self.watched.log.calls:
                assert not (call.method == "aclose()" and call.how == "cancelled"), (
                    f"aclose() of {call.executor_id} did not return within close_timeout: "
                    "the pool had to kill it (a graceful close must end on its own)"
                )

    def _require(self, checked: Rule) -> None:
        for name in checked.requires:
            if not getattr(self.capabilities, name):
                pytest.skip(f"requires capability {name}")

    def _job(self, sync: str, async_: str) -> str:
        """The entrypoint ``async_`` where the backend runs async entrypoints, else ``sync``."""
        return f"{_JOBS}:{async_ if self.capabilities.async_entrypoints else sync}"

    # -- the rules ----------------------------------------------------------------------

    def test_ex_1_exactly_one_outcome(self) -> None:
        from ._machine import PoolMachine

        checked = rule("EX-1")
        self._require(checked)
        self._run_machine(checked, PoolMachine)
        self._one_executor_answers_each_job_with_its_own_outcome(checked)

    def _one_executor_answers_each_job_with_its_own_outcome(self, checked: Rule) -> None:
        """After the random programs, which may never give one executor two jobs within
        their budget: one executor runs three jobs in a row, and each must end with its
        own outcome (its own value), not another job's."""
        cfg = self.config(entrypoint=self._job("echo", "aecho"), idle_executors=1, max_executors=1)

        async def main() -> list[tuple[str, object, object]]:
            ended: list[tuple[str, object, object]] = []
            async with self._open(cfg) as pool:
                for i in range(3):
                    handle = await pool.submit(f"payload {i}")
                    outcome = await handle.outcome()
                    ended.append((handle.job.id, f"payload {i}", outcome.value))
            return ended

        ended = self._run(checked, main, within=pool_bound(cfg, starts=3))
        with _checking(checked):
            for job_id, sent, got in ended:
                assert got == sent, (
                    f"job {job_id} (payload {sent!r}) ended with {got!r}: an outcome that "
                    "belongs to another job"
                )

    def _run_machine(self, checked: Rule, kind: type[PoolMachine | SlotMachine]) -> None:
        """Run a state machine within the profile's budget; its failure names the rule."""
        from ._machine import run_machine

        examples, steps, budget = MACHINES[self.active_profile]
        shrinking = self.shrink and self.active_profile == "thorough"
        machine = kind.for_backend(
            self.config,
            self.watched.inner,
            label=f"{checked.id} {checked.name}",
            budget_ends=time.monotonic() + budget,
            shrinking=shrinking,
            shrink_budget=SHRINK_BUDGET if shrinking else 0.0,
        )
        # A run begun before the budget ends may take one more step, and its teardown.
        cfg = self.config()
        self.deadline += budget + (SHRINK_BUDGET if shrinking else 0.0) + 3 * pool_bound(cfg)
        try:
            with _checking(checked):
                run_machine(machine, examples=examples, steps=steps)
        finally:
            self.notes["runs"] = machine.runs
            self.notes["steps"] = machine.steps_taken

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

        async def main() -> tuple[list[JobOutcome], BaseException | None]:
            async with self._open(cfg) as pool:
                handles = [await pool.submit(i) for i in range(3)]
                outcomes = [await handle.outcome() for handle in handles]
                try:
                    await pool.run(None)
                except AcquireError as exc:
                    return outcomes, exc
                return outcomes, None

        within = pool_bound(cfg, starts=2 * cfg.acquire_attempts)
        outcomes, error = self._run(checked, main, within=within)
        with _checking(checked):
            for outcome in outcomes:
                assert outcome.reason is FailureReason.ACQUIRE_FAILED, (
                    f"expected ACQUIRE_FAILED, got {outcome}"
                )
            assert error is not None, "run() returned although every setup raises"
            cause = error.__cause__
            assert type(cause).__name__ == "InjectedFault", (
                f"AcquireError should be caused by the setup's InjectedFault, not {cause!r}"
            )

    def test_ex_3_at_most_once(self) -> None:
        checked = rule("EX-3")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("fault", "afault"),
            drain_timeout=0.2,
            close_timeout=1.0,
            max_executors=2,
        )
        faults = [
            Fault("echo", 0),
            Fault("sleep", 0.02),
            Fault("hang"),
            Fault("raise", "once"),
            Fault("sleep", 5.0),
            Fault("echo", 1),
        ]
        if self.capabilities.isolates_crashes:
            faults.insert(2, Fault("crash", 3))

        async def main(witness: Witness) -> list[JobOutcome]:
            recorder = Recorder(witness=witness)
            async with self._open(cfg, observers=[recorder]) as pool:
                handles = [
                    await pool.submit(attrs.evolve(f, witness=witness.address)) for f in faults
                ]
                # cancel the hanging job once it runs: wait for it, not for a fixed time
                hanging = handles[faults.index(Fault("hang"))]
                await _began(witness, hanging.id, cfg.initialize_timeout + MARGIN)
                hanging.cancel()
                await pool.drain()
            return [await handle.outcome() for handle in handles]

        with Witness() as witness:
            within = pool_bound(cfg, starts=2, busy=1.0)
            outcomes = self._run(checked, functools.partial(main, witness), within=within)
            with _checking(checked):
                _witnessed(witness)
                for outcome in outcomes:
                    if outcome.status is JobStatus.SUCCEEDED:
                        began = [e for e in witness.events(outcome.job_id) if e.kind == "begin"]
                        assert len(began) == 1, (
                            f"{outcome.job_id} succeeded, but its body began {len(began)} times"
                        )

    def test_ex_4_bounded_drain(self) -> None:
        checked = rule("EX-4")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("scripted_sync", "scripted"),
            drain_timeout=0.2,
            close_timeout=1.0,
            max_executors=2,
        )
        limit = cfg.drain_timeout + cfg.close_timeout + DRAIN_MARGIN

        async def main() -> tuple[float, bool]:
            from .._simulated import Script

            recorder = Recorder()
            refused = False
            async with self._open(cfg, observers=[recorder]) as pool:
                handles = [await pool.submit(Script.hang()) for _ in range(2)]
                handles.append(await pool.submit(Script.succeed(1)))
                # drain while both hanging jobs run
                await pool.wait_until(lambda s: s.busy >= 2)
                start = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pool.drain)
                    await anyio.lowlevel.checkpoint()
                    try:
                        await pool.submit(Script.succeed(2))
                    except PoolClosed:
                        refused = True
                elapsed = anyio.current_time() - start
            with _checking(checked):
                for handle in handles:
                    assert handle.done(), f"{handle.id} has no outcome after drain"
                    assert recorder.finished[handle.id] == 1, (
                        f"{handle.id} reported {recorder.finished[handle.id]} times"
                    )
                assert recorder.ready <= recorder.closed, "an executor outlived the drain"
            return elapsed, refused

        elapsed, refused = self._run(checked, main, within=pool_bound(cfg) + limit)
        with _checking(checked):
            assert refused, "submit() during a drain did not raise PoolClosed"
            assert elapsed <= limit, f"drain took {elapsed:.2f}s > {limit:.2f}s"

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
                await pool.wait_until(lambda s: s.busy >= 1)
                handles[2].cancel()
                await pool.drain()

        # Hosted on trio: anyio's asyncio worker threads (anyio.to_thread) outlive their
        # loop by a moment, trio's cached ones are known to no_leaks().
        with _checking(checked), self._nothing_left():
            self._run(checked, main, within=pool_bound(cfg, busy=1.0), host="trio")

    def test_ex_6_crash_isolation(self) -> None:
        checked = rule("EX-6")
        self._require(checked)
        cfg = self.config(entrypoint=self._job("crash", "acrash"), max_executors=2)

        async def main() -> tuple[JobOutcome, JobOutcome]:
            async with self._open(cfg) as pool:
                crashed = await (await pool.submit(3)).outcome()
                after = await (await pool.submit("still serving")).outcome()
            return crashed, after

        crashed, after = self._run(checked, main, within=pool_bound(cfg, starts=2))
        with _checking(checked):
            assert crashed.reason is FailureReason.CRASHED, f"expected CRASHED, got {crashed}"
            assert after.status is JobStatus.SUCCEEDED, f"the pool stopped serving: {after}"
            assert after.value == "still serving"

    def test_ex_7_kill_running_job(self) -> None:
        checked = rule("EX-7")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._job("fault", "afault"),
            job_timeout=0.5,
            close_timeout=1.0,
        )
        # A kill must stop the job at its timeout, long before it would end by itself.
        limit = cfg.close_timeout + 0.5 + DRAIN_MARGIN
        # sync: never polls cancel_requested; async: waits, which only a kill of its
        # task (or its process) stops sooner
        job = Fault("ignore_cancel", 2 * limit)
        if self.capabilities.async_entrypoints:
            job = Fault("hang")

        async def main() -> tuple[JobOutcome | None, JobOutcome]:
            async with self._open(cfg) as pool:
                await pool.wait_until(lambda s: s.idle >= 1)
                handle = await pool.submit(job)
                hung: JobOutcome | None = None
                with anyio.move_on_after(limit):
                    hung = await handle.outcome()
                # (its own timeout: starting a job may take longer than the hang's 0.5 s)
                follow_up = await pool.submit("still serving", timeout=cfg.initialize_timeout)
                after = await follow_up.outcome()
            return hung, after

        hung, after = self._run(checked, main, within=pool_bound(cfg, starts=2) + limit)
        with _checking(checked):
            assert hung is not None, f"the job was not stopped within {limit}s"
            assert hung.status is JobStatus.TIMED_OUT, f"expected TIMED_OUT, got {hung}"
            assert after.value == "still serving", f"the pool stopped serving: {after}"

    def test_ex_8_sync_entrypoints(self) -> None:
        self._check_entrypoints(rule("EX-8"), "echo", "raise_error")

    def test_ex_9_async_entrypoints(self) -> None:
        self._check_entrypoints(rule("EX-9"), "aecho", "araise_error")

    def _check_entrypoints(self, checked: Rule, echo: str, raising: str) -> None:
        self._require(checked)
        payload = {"numbers": [1, 2, 3], "text": "é"}

        async def outcome_of(entrypoint: str, value: object) -> JobOutcome:
            async with self._open(self.config(entrypoint=f"{_JOBS}:{entrypoint}")) as pool:
                return await (await pool.submit(value)).outcome()

        async def main() -> tuple[JobOutcome, JobOutcome]:
            return await outcome_of(echo, payload), await outcome_of(raising, "boom")

        echoed, failed = self._run(checked, main, within=2 * pool_bound(self.config()))
        with _checking(checked):
            assert echoed.status is JobStatus.SUCCEEDED, f"{echo} did not succeed: {echoed}"
            assert echoed.value == payload, f"{echo} returned {echoed.value!r}"
            assert failed.reason is FailureReason.RAISED, f"expected RAISED, got {failed}"
            assert failed.error is not None, "a raising job's outcome carries no error"
            assert failed.error.type_name.endswith("InjectedFault"), failed.error
            assert failed.error.message == "boom", failed.error

    def test_ex_10_cancelled_start_leaves_nothing(self) -> None:
        checked = rule("EX-10")
        self._require(checked)
        setup = self._hanging_setup()
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
                outcome = await (await pool.submit("never runs")).outcome()
                # ...and then one by the drain
                await pool.wait_until(lambda s: s.starting >= 1)
                await pool.drain()
            return outcome

        within = pool_bound(cfg, starts=2 * cfg.acquire_attempts + 2)
        with _checking(checked), self._nothing_left():
            outcome = self._run(checked, main, within=within, host="trio")
        with _checking(checked):
            assert outcome.reason is FailureReason.ACQUIRE_FAILED, (
                f"expected ACQUIRE_FAILED, got {outcome}"
            )

    def _hanging_setup(self) -> str:
        """A setup that hangs until its start() is cancelled (5 s with sync entrypoints
        only, where a kill must stop it); skips the rule where nothing could stop it."""
        if self.capabilities.async_entrypoints:
            return "asetup_hangs"  # waits until cancelled
        if self.capabilities.can_kill_running_job:
            return "setup_hangs"  # sleeps 5 s: only a kill stops it sooner
        pytest.skip("requires async_entrypoints or can_kill_running_job (to stop a setup)")

    def test_ex_11_run_without_timeout_ended_at_drain(self) -> None:
        checked = rule("EX-11")
        self._require(checked)
        # Each kind of entrypoint the backend runs: run_job may wait for a sync job (in
        # a thread) otherwise than for an async one, and kill() must end either.
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
        self._check_drain_ends_run(checked, tuple(entrypoints))

    def _check_drain_ends_run(self, checked: Rule, entrypoints: tuple[str, ...]) -> None:
        """Rule EX-11: a run() job without a timeout, which holds no cancel scope of the
        pool's, still running when a drain's drain_timeout ends, ends once, POOL_CLOSED,
        by the kill() of its executor alone; a run() job with a timeout, which keeps its
        scope, still times out. Checked for each of ``entrypoints`` (jobs that hang until
        they are stopped), on asyncio and on trio."""
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
                    # A cancellation of the caller's task that nobody asked for. Noted
                    # and ended here: the rule goes on.
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
                leaks = self._nothing_left() if host == "trio" else contextlib.nullcontext()
                with _checking(checked), leaks:
                    within = pool_bound(cfg, starts=2) + timed_limit + drain_limit
                    seen = self._run(
                        checked, functools.partial(main, cfg), within=within, host=host
                    )
                    on = f"on {host}, {entrypoint.rpartition(':')[2]}:"
                    seen.check(on, self.capabilities, timeout, timed_limit, drain_limit)

    # -- pool rules: health and bounds ---------------------------------------------------

    def _nothing_left(self) -> contextlib.AbstractContextManager[None]:
        """What "nothing left behind" means for this backend. A local one: no child
        process, thread or file descriptor of this process is left (no_leaks). A remote
        one, whose executors live where this process cannot look (and whose client may
        keep threads and connections of its own): every executor made in the block
        reports itself dead (``health().alive`` false) once the block is over."""
        if self.capabilities.remote:
            return _executors_gone(self.watched)
        return no_leaks()

    def _default_job(self) -> str:
        return self._job("fault", "afault")

    def test_ex_12_dead_idle_executor_replaced(self) -> None:
        checked = rule("EX-12")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._default_job(), idle_executors=1, max_executors=2, ping_interval=0.5
        )
        noticed_within = cfg.ping_interval + MARGIN

        async def main(witness: Witness) -> str | None:
            recorder = Recorder(witness=witness)
            async with self._open(cfg, observers=[recorder]) as pool:
                await pool.wait_until(lambda s: s.idle >= 1 and s.starting == 0)
                probe = await (
                    await pool.submit(Fault("echo", 1, witness=witness.address))
                ).outcome()
                began = witness.began(probe.job_id)
                assert probe.executor_id is not None, f"{probe.job_id} ran on no executor"
                if began is None or began.pid is None or not _process_alive(began.pid):
                    return "the slot keeps no process between jobs: nothing to kill while idle"
                await pool.wait_until(lambda s: s.idle >= 1 and s.busy == 0)
                os.kill(began.pid, signal.SIGKILL)
                noticed = await wait_until(
                    lambda: probe.executor_id in recorder.closed, noticed_within
                )
                assert noticed, (
                    f"the pool had not closed {probe.executor_id} {noticed_within:.1f}s after "
                    f"its process {began.pid} was killed: health() still said it was alive"
                )
                back = await wait_until(
                    lambda: pool.statistics().idle >= 1, cfg.initialize_timeout + MARGIN
                )
                assert back, "the pool did not come back to its idle target"
                await _still_serving(pool)
            return None

        self._run_witnessed(checked, main, within=pool_bound(cfg, starts=3) + noticed_within)

    def test_ex_13_wedged_executor_found(self) -> None:
        checked = rule("EX-13")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._default_job(),
            idle_executors=1,
            max_executors=2,
            ping_interval=0.2,
            ping_timeout=1.0,
        )
        found_within = cfg.ping_timeout + 2 * cfg.ping_interval + MARGIN

        async def main(witness: Witness) -> str | None:
            async with self._open(cfg, observers=[Recorder(witness=witness)]) as pool:
                await pool.wait_until(lambda s: s.idle >= 1 and s.starting == 0)
                idle = list(self.watched.executors().values())[-1]
                pings = await wait_until(
                    lambda: idle.health().ping_latency is not None, 3 * cfg.ping_interval
                )
                if not pings:
                    return "health() of a ready executor reports no ping_latency: no pings"
                handle = await pool.submit(Fault("hang", witness=witness.address))
                await _began(witness, handle.id, cfg.initialize_timeout + MARGIN)
                began = witness.began(handle.id)
                assert began is not None, f"{handle.id} never reported where it ran"
                assert began.pid is not None, f"{handle.id} never reported where it ran"
                os.kill(began.pid, signal.SIGSTOP)
                wedged: JobOutcome | None = None
                try:
                    with anyio.move_on_after(found_within):
                        wedged = await handle.outcome()
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(began.pid, signal.SIGCONT)
                assert wedged is not None, (
                    f"{handle.id}, whose process {began.pid} was stopped (SIGSTOP), had no "
                    f"outcome after {found_within:.1f}s: ping_latency never passed ping_timeout"
                )
                assert wedged.reason is FailureReason.UNRESPONSIVE, (
                    f"expected UNRESPONSIVE, got {wedged}"
                )
                await _still_serving(pool)
            return None

        self._run_witnessed(checked, main, within=pool_bound(cfg, starts=3) + found_within)

    def test_ex_14_memory_limit_enforced(self) -> None:
        checked = rule("EX-14")
        self._require(checked)
        probe_cfg = self.config(entrypoint=self._default_job(), memory_warn_mb=1_000_000.0)

        async def idle_memory() -> float | None:
            async with self._open(probe_cfg) as pool:
                await pool.wait_until(lambda s: s.idle >= 1 and s.starting == 0)
                return list(self.watched.executors().values())[-1].health().memory_mb

        base = self._run(checked, idle_memory, within=pool_bound(probe_cfg))
        with _checking(checked):
            assert base is not None, (
                "health() of an idle executor reports no memory_mb, although the backend "
                "declares measures_memory"
            )
        limit = base + 64
        cfg = self.config(entrypoint=self._default_job(), memory_limit_mb=limit, ping_interval=0.2)
        found_within = 2 * cfg.ping_interval + MARGIN

        async def main(witness: Witness) -> None:
            async with self._open(cfg, observers=[Recorder(witness=witness)]) as pool:
                big = Fault("allocate", 128, hold=20.0, witness=witness.address)
                handle = await pool.submit(big)
                await _began(witness, handle.id, cfg.initialize_timeout + MARGIN)
                over: JobOutcome | None = None
                with anyio.move_on_after(found_within):
                    over = await handle.outcome()
                assert over is not None, (
                    f"{handle.id} held 128 MiB over a base of {base:.0f} MiB "
                    f"(memory_limit_mb = {limit:.0f}) and had no outcome after "
                    f"{found_within:.1f}s"
                )
                assert over.reason is FailureReason.MEMORY_LIMIT, (
                    f"expected MEMORY_LIMIT, got {over}"
                )
                await _still_serving(pool)

        self._run_witnessed(checked, main, within=pool_bound(cfg, starts=3) + found_within)

    def test_ex_15_graceful_close(self) -> None:
        checked = rule("EX-15")
        self._require(checked)
        cfg = self.config(
            entrypoint=self._default_job(), idle_executors=2, max_executors=3, close_timeout=2.0
        )
        faults = [
            Fault("echo", 1),
            Fault("raise", "boom"),
            *(Fault("raise_base", name) for name in base_endings(self.capabilities)),
            Fault("sleep", 0.01),
        ]

        async def main() -> None:
            async with self._open(cfg) as pool:
                await pool.wait_until(lambda s: s.idle >= 2 and s.starting == 0)
                for fault in faults:
                    await (await pool.submit(fault)).outcome()
                await pool.wait_until(lambda s: s.busy == 0)

        within = pool_bound(cfg, starts=2, busy=len(faults) * MARGIN)
        self._run(checked, main, within=within)
        self._closed_gracefully(checked)

    def test_ex_16_ignored_cancellation_bounded(self) -> None:
        checked = rule("EX-16")
        self._require(checked)
        cfg = self.config(
            entrypoint=f"{_JOBS}:fault",
            job_timeout=0.5,
            close_timeout=1.0,
            drain_timeout=0.2,
            idle_executors=1,
            max_executors=2,
        )
        timed_limit = cfg.job_timeout + cfg.close_timeout + MARGIN  # type: ignore[operator]
        drain_limit = cfg.drain_timeout + cfg.close_timeout + MARGIN
        # Long enough that a run_job which waits for it ends too late, no longer: a job
        # abandoned by a backend that cannot kill runs on, and the rule waits for it.
        stubborn = max(timed_limit, drain_limit) + 1.0

        async def main(witness: Witness) -> tuple[JobOutcome | None, float, set[str]]:
            ignoring = Fault("ignore_cancel", stubborn, witness=witness.address)
            async with self._open(cfg, observers=[Recorder(witness=witness)]) as pool:
                await pool.wait_until(lambda s: s.idle >= 1)
                timed = await pool.submit(ignoring)
                timed_out: JobOutcome | None = None
                with anyio.move_on_after(timed_limit):
                    timed_out = await timed.outcome()
                await _still_serving(pool)
                running = await pool.submit(ignoring, timeout=10 * stubborn)
                await _began(witness, running.id, cfg.initialize_timeout + MARGIN)
                start = anyio.current_time()
                await pool.drain()
                return timed_out, anyio.current_time() - start, {timed.id, running.id}

        with Witness() as witness:
            within = pool_bound(cfg, starts=3) + timed_limit + drain_limit
            timed_out, drained_in, ids = self._run(
                checked, functools.partial(main, witness), within=within
            )
            abandoned = () if self.capabilities.can_kill_running_job else ids
            try:
                with _checking(checked):
                    assert timed_out is not None, (
                        f"a job that ignores cancellation, with job_timeout = "
                        f"{cfg.job_timeout}s, had no outcome after {timed_limit:.1f}s"
                    )
                    assert timed_out.status is JobStatus.TIMED_OUT, (
                        f"expected TIMED_OUT, got {timed_out}"
                    )
                    assert drained_in <= drain_limit, (
                        f"a drain while a job ignored cancellation took {drained_in:.2f}s > "
                        f"{drain_limit:.2f}s"
                    )
                    _witnessed(witness, may_run_on=abandoned)
            finally:
                # Nothing the rule started may outlive it, whether it held or not:
                # abandoned jobs end by themselves, and are waited for.
                ended = witness.wait_for(
                    lambda events: {e.job_id for e in events if e.kind == "end"} >= set(abandoned),
                    stubborn + MARGIN,
                )
            with _checking(checked):
                assert ended, f"jobs abandoned at their timeout never ended: {abandoned}"

    # -- slot rules -------------------------------------------------------------------------

    def _slot_rule(
        self,
        checked: Rule,
        body: Callable[[Rig], Awaitable[str | None]],
        *,
        each_entrypoint: bool = False,
        entrypoints: list[str] | None = None,
        leaks: bool = False,
        calls: int = 6,
        extra: float = 0.0,
        **overrides: Any,
    ) -> None:
        """Run ``body`` on a rig of a bare backend (for each of ``entrypoints``, for each
        kind of fault entrypoint the backend runs, or the default one), within a deadline
        of ``calls`` calls that may each take up to initialize_timeout or close_timeout."""
        self._require(checked)
        kinds = entrypoint_kinds(self.capabilities)
        if entrypoints is None:
            entrypoints = kinds if each_entrypoint else kinds[:1]
        skipped: str | None = None
        for entrypoint in entrypoints:
            cfg = self.config(entrypoint=entrypoint, **overrides)
            within = calls * (max(cfg.initialize_timeout, cfg.close_timeout) + MARGIN) + extra

            async def main(cfg: PoolConfig = cfg, witness: Witness | None = None) -> str | None:
                assert witness is not None
                async with Rig.open(cfg, self.capabilities, self.watched, witness) as rig:
                    return await body(rig)

            # Leaks are checked with the rig hosted on trio (as for EX-5 and EX-10).
            left = self._nothing_left() if leaks else _nothing()
            with Witness() as witness, _checking(checked), left:
                job = functools.partial(main, witness=witness)
                host = "trio" if leaks else "asyncio"
                skipped = self._run(checked, job, within=within, host=host)
        if skipped:
            pytest.skip(skipped)

    def test_sl_1_lifecycle(self) -> None:
        self._slot_rule(rule("SL-1"), _slot_rules.lifecycle, calls=16)

    def test_sl_2_failed_start_raises(self) -> None:
        setup = self._job("setup_raises", "asetup_raises")
        self._slot_rule(rule("SL-2"), _slot_rules.failed_start, setup=setup, calls=3)

    def test_sl_3_refuses_unless_ready(self) -> None:
        self._slot_rule(rule("SL-3"), _slot_rules.refuses_unless_ready, calls=10)

    def test_sl_4_one_job_at_a_time(self) -> None:
        self._slot_rule(rule("SL-4"), _slot_rules.one_job_at_a_time, each_entrypoint=True)

    def test_sl_5_every_ending_is_an_outcome(self) -> None:
        self._slot_rule(rule("SL-5"), _slot_rules.every_ending, each_entrypoint=True, calls=24)

    def test_sl_6_cancelled_run_stops_the_job(self) -> None:
        self._slot_rule(rule("SL-6"), _slot_rules.cancelled_run, each_entrypoint=True, calls=10)

    def test_sl_7_cancelled_start_returns(self) -> None:
        setup = f"{_JOBS}:{self._hanging_setup()}"
        self._slot_rule(rule("SL-7"), _slot_rules.cancelled_start, setup=setup, leaks=True, calls=3)

    def test_sl_8_kill_stops_the_job(self) -> None:
        self._slot_rule(rule("SL-8"), _slot_rules.kill_running_job, each_entrypoint=True, calls=8)

    def test_sl_9_wear(self) -> None:
        jobs, seconds = WEAR[self.active_profile]
        ran: list[int] = []

        async def body(rig: Rig) -> None:
            ran.append(await _slot_rules.wear(rig, jobs, seconds))

        self._slot_rule(rule("SL-9"), body, calls=4, extra=seconds)
        self.notes["jobs on one executor"] = ran[-1]

    def test_sl_10_health_sees_death(self) -> None:
        self._slot_rule(rule("SL-10"), _slot_rules.dead_when_killed, ping_interval=0.5)

    def test_sl_11_health_measures_memory(self) -> None:
        self._slot_rule(rule("SL-11"), _slot_rules.measures_memory, memory_warn_mb=1_000_000.0)

    def test_sl_12_health_sees_a_wedge(self) -> None:
        self._slot_rule(rule("SL-12"), _slot_rules.wedged, ping_interval=0.1)

    def test_sl_13_slot_state_machine(self) -> None:
        from ._slot_machine import SlotMachine

        checked = rule("SL-13")
        self._require(checked)
        self._run_machine(checked, SlotMachine)

    def test_sl_14_run_job_yields(self) -> None:
        checked = rule("SL-14")
        self._require(checked)
        entrypoints = self._instant_entrypoints()
        self._slot_rule(checked, _slot_rules.run_job_yields, entrypoints=entrypoints)

    def _instant_entrypoints(self) -> list[str]:
        """Entrypoints that return their payload without awaiting: aecho, echo."""
        caps = self.capabilities
        kinds = [("aecho", caps.async_entrypoints), ("echo", caps.sync_entrypoints)]
        return [f"{_JOBS}:{name}" for name, runs in kinds if runs]


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


#: seconds a remote executor may take to report itself dead once its pool has closed
GONE_GRACE = 5.0


@contextlib.contextmanager
def _executors_gone(watched: WatchedBackend) -> Iterator[None]:
    before = set(watched.executors())
    yield
    deadline = time.monotonic() + GONE_GRACE
    while True:
        made = watched.executors()
        alive = sorted(i for i, e in made.items() if i not in before and e.inner.health().alive)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert not alive, (
        f"executors still alive {GONE_GRACE}s after their pool closed (health().alive "
        f"is true): {', '.join(alive)}"
    )


def _process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


@attrs.define
class _EndedAtDrain:
    """What rule EX-11 saw on one host, checked once its pool has closed."""

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
        self,
        on: str,
        capabilities: Capabilities,
        timeout: float,
        timed_limit: float,
        drain_limit: float,
    ) -> None:
        how = f"kill() of {self.executor_id}"
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
            f"{on} the caller of run() was cancelled, not by the rule: the end of the "
            "drain cancelled the caller's task instead of ending its job"
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
            f"{after} after it: the end of the drain left a cancellation in it"
        )
        finished = self.recorder.finished[self.job_id]
        assert finished == 1, f"{on} {self.job_id} was reported {finished} times"
        reason = self.recorder.closed_reasons.get(self.executor_id)
        # A backend that cannot kill a running job gives its executor up instead.
        expected = {"pool_closed"}
        if not capabilities.can_kill_running_job:
            expected.add("abandoned")
        assert reason in expected, (
            f"{on} {self.executor_id}, whose run() job the drain's end stopped, was reported "
            f"closed {reason or 'never'}, expected {' or '.join(sorted(expected))}"
        )
        assert self.recorder.ready <= self.recorder.closed, (
            f"{on} an executor outlived the drain: "
            f"{sorted(self.recorder.ready - self.recorder.closed)}"
        )


async def _still_serving(pool: Pool) -> None:
    """After the fault, the pool goes on serving: a new job ends with its value."""
    after = await (await pool.submit(Fault("echo", "after"))).outcome()
    assert after.value == "after", f"the pool stopped serving: {after}"


async def _began(witness: Witness, job_id: str, within: float) -> None:
    """Wait until the body of ``job_id`` began (the witness saw it)."""
    began = await wait_until(lambda: witness.began(job_id) is not None, within)
    assert began, f"the body of {job_id} did not begin within {within}s"


def _witnessed(witness: Witness, *, may_run_on: Collection[str] = ()) -> None:
    """What the witness saw: no job ran twice, two at once on one executor, or after its
    outcome."""
    witness.settle()
    problems = witness.problems(may_run_on=may_run_on)
    assert not problems, "; ".join(problems)


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
