"""The rig of the SL rules, which check a backend on bare executors with no pool.

A :class:`Rig` opens the backend under test as the pool would (``Backend.open``), makes
executors with its factory and calls their methods in the orders the contract allows and
refuses, with a deadline on every call. Jobs are the fault-injecting jobs of
:mod:`executors.testing.jobs`, reporting to a :class:`~executors.testing.witness.Witness`,
so what ran, when and where is observed, not inferred.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from typing import TYPE_CHECKING

import anyio
import attrs

from ..._config import LoadedConfig, build_backend_options
from ..._exceptions import LaunchError
from ..._executor import ExecutorState
from ..._job import FailureReason, Job, JobStatus
from ..jobs import Fault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

    from ..._config import PoolConfig
    from ..._executor import Capabilities, ExecutorFactory, JobExecutor
    from ..._job import JobOutcome
    from ..witness import Witness
    from ._guard import WatchedBackend

_JOBS = "executors.testing.jobs"
#: seconds a prompt step (a kill, a second close, a refusal) may take
MARGIN = 2.0
#: seconds between two looks at something the rig waits for
_POLL = 0.005
_CANCELLED = "cancelled"
_REFUSED = "refused"


def state_of(executor: JobExecutor) -> ExecutorState:
    """``executor.state``, read afresh (a state changes under the checker's feet)."""
    return executor.state


def entrypoint_kinds(capabilities: Capabilities) -> list[str]:
    """The fault entrypoints the backend runs: ``afault`` and/or ``fault``."""
    kinds = []
    if capabilities.async_entrypoints:
        kinds.append(f"{_JOBS}:afault")
    if capabilities.sync_entrypoints:
        kinds.append(f"{_JOBS}:fault")
    return kinds


def is_sync(entrypoint: str) -> bool:
    return entrypoint.endswith(":fault")


def base_endings(capabilities: Capabilities) -> list[str]:
    """The :data:`~executors.testing.jobs.BASE_EXCEPTIONS` a job raises in the rules.

    ``KeyboardInterrupt`` only where crashes are isolated: elsewhere the job's code may
    share its thread with the host, whose Ctrl-C a backend rightly lets through."""
    names = ["SystemExit", "GeneratorExit", "InjectedBaseFault"]
    if capabilities.isolates_crashes:
        names.append("KeyboardInterrupt")
    return names


def outcome_problem(fault: Fault, outcome: JobOutcome, capabilities: Capabilities) -> str | None:
    """What is wrong with ``outcome`` for a job left alone to run ``fault``, or None."""
    if fault.succeeds:
        if outcome.status is not JobStatus.SUCCEEDED:
            return f"expected a success with {fault.expected!r}, got {_show(outcome)}"
        if outcome.value != fault.expected:
            return f"succeeded with {outcome.value!r}, expected {fault.expected!r}"
        return None
    expected_type = ""
    allowed = set()
    if fault.kind == "raise":
        allowed, expected_type = {FailureReason.RAISED}, "InjectedFault"
    elif fault.kind == "raise_base":
        allowed, expected_type = {FailureReason.RAISED}, str(fault.value)
        if capabilities.isolates_crashes:
            allowed.add(FailureReason.CRASHED)  # the job's process may end with it
    elif fault.kind == "crash":
        allowed = {FailureReason.CRASHED}
    if outcome.reason not in allowed:
        expected = " or ".join(sorted(reason.value for reason in allowed))
        return f"expected {expected}, got {_show(outcome)}"
    if outcome.reason is FailureReason.RAISED:
        error = outcome.error
        if error is None or not error.type_name.endswith(expected_type):
            return f"expected the error to be a {expected_type}, got {error!r}"
        if fault.kind == "raise" and error.message != str(fault.value):
            return f"expected the message {fault.value!r}, got {error.message!r}"
    return None


def _raised(job: Job, executor: JobExecutor, fault: object, exc: BaseException) -> str:
    return (
        f"run_job({job.id}) of {fault} on {executor.id} raised {type(exc).__name__}: {exc} "
        "(a job's failure, a crash and a kill are outcomes; only LaunchError may be "
        "raised, for a job never accepted)"
    )


def _show(outcome: JobOutcome) -> str:
    if outcome.status is JobStatus.SUCCEEDED:
        return f"a success with {outcome.value!r}"
    reason = outcome.reason.value if outcome.reason else outcome.status.value
    return f"{reason}" + (f" ({outcome.error})" if outcome.error else "")


@attrs.define(eq=False)
class Running:
    """One ``run_job`` call in a task of its own."""

    job: Job
    scope: anyio.CancelScope
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: JobOutcome | None = None
    #: ``returned``, ``cancelled``, ``refused`` (LaunchError) or ``raised <type>``
    ended: str = ""
    error: BaseException | None = None


@attrs.define(eq=False)
class Rig:
    """The backend under test opened with ``config``, without a pool."""

    config: PoolConfig
    capabilities: Capabilities
    backend: WatchedBackend
    witness: Witness
    factory: ExecutorFactory
    _serial: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    #: executors made by this rig, closed on exit
    made: list[JobExecutor] = attrs.field(factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        config: PoolConfig,
        capabilities: Capabilities,
        backend: WatchedBackend,
        witness: Witness,
    ) -> AsyncIterator[Rig]:
        options: object = build_backend_options(backend.options, LoadedConfig.of(config))
        async with backend.open(config, options) as factory:
            rig = cls(config, capabilities, backend, witness, factory)
            try:
                yield rig
            finally:
                await rig._kill_all()

    async def _kill_all(self) -> None:
        """Kill every executor made (kill() is idempotent and never raises)."""
        raised: list[str] = []
        with anyio.CancelScope(shield=True):
            for executor in self.made:
                with anyio.move_on_after(self.config.close_timeout + MARGIN):
                    try:
                        await executor.kill()
                    except Exception as exc:
                        raised.append(f"kill() of {executor.id} raised {exc!r}")
        assert not raised, "; ".join(raised)

    # -- making things ---------------------------------------------------------------------

    def job(self, fault: Fault) -> Job:
        """A job running ``fault``, reporting to the witness."""
        job_id = f"job-{next(self._serial)}"
        return Job(job_id, attrs.evolve(fault, witness=self.witness.address))

    def create(self) -> JobExecutor:
        executor_id = f"slot-{next(self._serial)}"
        executor = self.factory.create_executor(executor_id)
        self.made.append(executor)
        assert executor.id == executor_id, (
            f"create_executor({executor_id!r}) made an executor whose id is {executor.id!r}"
        )
        return executor

    async def started(self) -> JobExecutor:
        """A new executor, started and READY."""
        executor = self.create()
        await self.start(executor)
        assert executor.state is ExecutorState.READY, (
            f"start() of {executor.id} returned, but its state is {executor.state.value}, not ready"
        )
        return executor

    async def start(self, executor: JobExecutor) -> None:
        within = self.config.initialize_timeout
        with anyio.move_on_after(within) as late:
            await executor.start()
        assert not late.cancelled_caught, (
            f"start() of {executor.id} did not return within initialize_timeout ({within}s)"
        )

    # -- running jobs ----------------------------------------------------------------------

    async def run(self, executor: JobExecutor, fault: Fault, within: float = 0.0) -> JobOutcome:
        """Run one job that ends by itself and return its outcome (delivered to the
        witness); the job must not be refused."""
        job = self.job(fault)
        within = within or self.config.initialize_timeout + MARGIN
        with anyio.move_on_after(within) as late:
            try:
                outcome = await executor.run_job(job)
            except LaunchError as exc:
                self.witness.delivered(job.id, _REFUSED)
                msg = (
                    f"run_job({job.id}) on {executor.id}, whose state is "
                    f"{executor.state.value}, refused the job: {exc}"
                )
                raise AssertionError(msg) from exc
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                self.witness.delivered(job.id, f"raised {type(exc).__name__}")
                raise AssertionError(_raised(job, executor, fault, exc)) from exc
        if late.cancelled_caught:
            self.witness.delivered(job.id, _CANCELLED)
            msg = f"run_job({job.id}) of {fault} on {executor.id} did not return within {within}s"
            raise AssertionError(msg)
        self.witness.delivered(job.id, outcome.status.value)
        assert outcome.job_id == job.id, (
            f"run_job({job.id}) on {executor.id} returned the outcome of {outcome.job_id}"
        )
        return outcome

    async def refused(self, executor: JobExecutor, why: str) -> None:
        """``run_job`` on ``executor`` must raise LaunchError, promptly, and never begin
        the job."""
        job = self.job(Fault("echo", "must not run"))
        state = executor.state.value
        with anyio.move_on_after(MARGIN) as late:
            try:
                outcome = await executor.run_job(job)
            except anyio.get_cancelled_exc_class():
                raise
            except LaunchError:
                self.witness.delivered(job.id, _REFUSED)
                began = self.witness.began(job.id)
                assert began is None, (
                    f"run_job({job.id}) on {executor.id} ({why}) raised LaunchError after "
                    "the job's body began: the pool would run it twice"
                )
                return
            except BaseException as exc:
                self.witness.delivered(job.id, f"raised {type(exc).__name__}")
                raise AssertionError(_raised(job, executor, job.payload, exc)) from exc
        self.witness.delivered(job.id, _CANCELLED if late.cancelled_caught else "returned")
        if late.cancelled_caught:
            msg = f"run_job({job.id}) on {executor.id} ({why}) neither refused nor returned"
        else:
            msg = (
                f"run_job({job.id}) on {executor.id} ({why}, state {state}) did not raise "
                f"LaunchError: it returned {_show(outcome)}"
            )
        raise AssertionError(msg)

    @contextlib.asynccontextmanager
    async def runs(self) -> AsyncIterator[anyio.abc.TaskGroup]:
        """A task group for :meth:`launch`. When the rule fails inside it, every call
        still running is cancelled with it, and must return promptly."""
        async with anyio.create_task_group() as tg:
            try:
                yield tg
            except BaseException:
                self.backend.log.cancel_all()
                raise

    def launch(
        self,
        tg: anyio.abc.TaskGroup,
        executor: JobExecutor,
        fault: Fault,
        before: Callable[[Running], None] | None = None,
    ) -> Running:
        """Start ``run_job`` of a job running ``fault`` in a task of its own; ``before``
        is called in that task right before ``run_job``, with nothing in between."""
        running = Running(self.job(fault), anyio.CancelScope())
        tg.start_soon(self._run_in_task, executor, running, before)
        return running

    async def _run_in_task(
        self, executor: JobExecutor, running: Running, before: Callable[[Running], None] | None
    ) -> None:
        try:
            with running.scope:
                try:
                    if before is not None:
                        before(running)
                    running.outcome = await executor.run_job(running.job)
                    running.ended = "returned"
                except LaunchError:
                    running.ended = _REFUSED
                except anyio.get_cancelled_exc_class():
                    running.ended = _CANCELLED
                    raise
                except BaseException as exc:
                    running.ended, running.error = f"raised {type(exc).__name__}", exc
        finally:
            status = running.outcome.status.value if running.outcome else running.ended
            self.witness.delivered(running.job.id, status)
            running.done.set()

    def cancel(self, running: Running) -> None:
        """Cancel ``running``'s run_job (which then has to return promptly)."""
        running.scope.cancel()
        self.backend.log.cancelled(f"run_job({running.job.id})")

    def ended_before_outcome(self, running: Running) -> None:
        """On a backend that cannot kill a running job, a run_job that returned after a
        cancellation must have waited for the job's body to end: nothing of it runs on."""
        if self.capabilities.can_kill_running_job:
            return  # the body may have been killed, and never ended
        self.witness.settle()
        job_id = running.job.id
        kinds = [e.kind for e in self.witness.events(job_id) if e.kind in ("end", "outcome")]
        assert kinds[:1] == ["end"], (
            f"run_job({job_id}) returned before the job's body ended: the backend cannot "
            "kill a running job, so it must wait for the job to stop (within close_timeout)"
        )

    async def began(self, running: Running, within: float | None = None) -> None:
        """Wait until ``running``'s body began (or its run ended)."""
        within = within or self.config.initialize_timeout + MARGIN
        job_id = running.job.id
        await wait_until(
            lambda: self.witness.began(job_id) is not None or running.done.is_set(), within
        )
        if self.witness.began(job_id) is None:
            how = f"its run_job {running.ended}" if running.done.is_set() else "it is still waiting"
            msg = f"the body of {job_id} did not begin within {within}s ({how})"
            raise AssertionError(msg)

    async def stopped(self, running: Running, within: float, after: str) -> None:
        """Wait until ``running``'s run_job returned, at most ``within`` seconds after
        ``after`` happened."""
        with anyio.move_on_after(within):
            await running.done.wait()
        if not running.done.is_set():
            msg = f"run_job({running.job.id}) had not returned {within:.1f}s after {after}"
            raise AssertionError(msg)

    def check_witness(self, *, may_run_on: Iterable[str] = ()) -> None:
        """No job ran twice, two at once on one executor, or after its outcome."""
        self.witness.settle()
        problems = self.witness.problems(may_run_on=set(may_run_on))
        assert not problems, "; ".join(problems)

    async def honest(self, executor: JobExecutor, after: str) -> JobExecutor:
        """The state ``executor`` reports after ``after`` matches what it does: READY
        runs the next job, anything but BUSY refuses it. Returns a READY executor
        (``executor``, or a new one)."""
        state = executor.state
        assert state is not ExecutorState.BUSY, (
            f"{executor.id} still reports busy after {after}, with no job running"
        )
        if state is ExecutorState.READY:
            outcome = await self.run(executor, Fault("echo", "next"))
            assert outcome.value == "next", (
                f"{executor.id} reported ready after {after}, but the next job got {_show(outcome)}"
            )
            return executor
        await self.refused(executor, f"{state.value} after {after}")
        await self.close(executor)
        return await self.started()

    async def close(self, executor: JobExecutor) -> None:
        """aclose() returns within close_timeout (graceful, no kill needed) and leaves
        the executor CLOSED."""
        within = self.config.close_timeout
        with anyio.move_on_after(within) as late:
            await executor.aclose()
        assert not late.cancelled_caught, (
            f"aclose() of {executor.id} ({executor.state.value}) did not return within "
            f"close_timeout ({within}s): the pool would have to kill it"
        )
        assert executor.state is ExecutorState.CLOSED, (
            f"aclose() of {executor.id} returned, but its state is {executor.state.value}"
        )

    async def prompt(self, executor: JobExecutor, method: str) -> None:
        """``method`` (``aclose`` or ``kill``) returns within MARGIN and never raises."""
        with anyio.move_on_after(MARGIN) as late:
            try:
                await getattr(executor, method)()
            except Exception as exc:
                msg = f"{method}() of {executor.id} ({executor.state.value}) raised {exc!r}"
                raise AssertionError(msg) from exc
        assert not late.cancelled_caught, (
            f"{method}() of {executor.id} ({executor.state.value}) did not return within {MARGIN}s"
        )


# -- signals from outside, for the health rules ----------------------------------------------


def signal_body(rig: Rig, job_id: str, signum: int) -> int:
    """Send ``signum`` to the process where ``job_id``'s body began; its pid."""
    began = rig.witness.began(job_id)
    pid = began.pid if began is not None else None
    assert pid is not None, f"{job_id} never reported where it ran"
    assert pid != os.getpid(), (
        f"{job_id} ran in the checker's own process, although the backend isolates crashes"
    )
    os.kill(pid, signum)
    return pid


def resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


async def wait_until(predicate: Callable[[], bool], within: float) -> bool:
    """Wait until ``predicate()`` holds, looking every few milliseconds; False if it did
    not within ``within`` seconds. For what no event of the loop signals: the witness
    (fed by a thread of its own), an executor's health."""
    with anyio.move_on_after(within):
        while not predicate():  # noqa: ASYNC110 -- no loop event to wait on: see above
            await anyio.sleep(_POLL)
        return True
    return predicate()
