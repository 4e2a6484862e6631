"""The Hypothesis state machine of rule SL-13: bare executors, any order of calls.

It makes executors with the backend's factory and calls their methods in any order,
the orders the contract refuses included: start, submit a fault-injecting job (with or
without a time limit), cancel a run, kill, close, wait for a run. After every step it
checks what each call returned against the state the executor reported when it was made,
and what the jobs' own reports to the witness show.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from ..._executor import ExecutorState
from ._machine import TIMED, MachineBase, faults, loop_event
from ._slot import MARGIN, Rig, Running, outcome_problem, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._executor import JobExecutor
    from ..jobs import Fault

_JOBS = "executors.testing.jobs"
#: executors not closed at once, at most
_LIVE = 3


@attrs.define(eq=False)
class _Slot:
    executor: JobExecutor
    #: start() returned
    started: bool = False
    #: "kill" or "aclose", once called
    closed_by: str | None = None


@attrs.define(eq=False)
class _Run:
    fault: Fault
    slot: _Slot
    timed: bool = False
    running: Running = attrs.field(init=False)
    #: the state the executor reported right before run_job was called
    state_at_call: ExecutorState | None = None
    #: the runs of its executor that had not returned then
    beside: list[str] = attrs.field(factory=list)
    cancelled: bool = False
    #: its executor was killed or closed while it ran
    stopped: bool = False
    checked: bool = False


class SlotMachine(MachineBase):
    """Drives bare executors of the backend under test."""

    label: ClassVar[str] = "SL-13 slot_state_machine"

    def __init__(self) -> None:
        super().__init__()
        self._rig: Rig | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._leave: anyio.Event | None = None
        self._held: Any = None
        self._slots: list[_Slot] = []
        self._runs: list[_Run] = []

    # -- helpers ------------------------------------------------------------------------

    @property
    def rig(self) -> Rig:
        assert self._rig is not None
        return self._rig

    def _bound(self) -> float:
        return self.config.initialize_timeout + self.config.close_timeout + MARGIN

    def _stop_bound(self) -> float:
        """Seconds a run may take to return once cancelled, or once its executor was
        killed or closed."""
        return self.config.close_timeout + MARGIN

    async def _hold(self, ready: anyio.Event) -> None:
        """Holds the rig (the opened backend) and a task group for the runs, until the
        machine's teardown; sets ``ready`` once they are there, or failed."""
        self._leave = anyio.Event()
        try:
            rig_cm = Rig.open(self.config, self.capabilities, self._watched, self.witness)
            async with rig_cm as rig, anyio.create_task_group() as tg:
                self._rig, self._tg = rig, tg
                ready.set()
                await self._leave.wait()
                tg.cancel_scope.cancel()
        finally:
            ready.set()

    def _slot(self, number: int, which: Callable[[_Slot], bool]) -> _Slot | None:
        candidates = [slot for slot in self._slots if which(slot)]
        return candidates[number % len(candidates)] if candidates else None

    def _active(self, slot: _Slot | None = None) -> list[_Run]:
        return [
            run
            for run in self._runs
            if hasattr(run, "running")
            and not run.running.done.is_set()
            and (slot is None or run.slot is slot)
        ]

    async def _ended_or_began(self, run: _Run) -> None:
        job_id = run.running.job.id
        await wait_until(
            lambda: run.running.done.is_set() or self.witness.began(job_id) is not None,
            self._bound(),
        )

    async def _until_done(self, runs: list[_Run]) -> None:
        for run in runs:
            await run.running.done.wait()

    # -- rules --------------------------------------------------------------------------

    @initialize(host=st.sampled_from(["asyncio", "trio"]), sync=st.booleans())
    def open(self, host: str, sync: bool) -> None:
        caps = self.capabilities
        use_sync = self._sync = caps.sync_entrypoints and (sync or not caps.async_entrypoints)
        if not self._begin_run():
            return
        self._config = self.make_config(
            entrypoint=f"{_JOBS}:{'fault' if use_sync else 'afault'}", close_timeout=1.0
        )
        self._log(f"open(host={host!r}, sync={use_sync})")
        self._enter(host)
        ready = self._call(loop_event, within=MARGIN, what="an event")
        self._held = self.loop.portal.start_task_soon(self._hold, ready)
        self._call(ready.wait, within=self._bound(), what="opening the backend")
        if self._tg is None:
            error = self._held.exception(timeout=MARGIN) if self._held.done() else None
            self._fail("backend_opens", f"Backend.open() failed: {error!r}")
        # Every run begins with a ready executor: most steps need one.
        self.create()
        self.start(0)

    # No preconditions: whether a rule applies depends on what ran in real time, and
    # Hypothesis replays a run from its draws alone. A rule that finds nothing to act
    # on does nothing.
    @rule()
    def create(self) -> None:
        if not self._live() or sum(s.closed_by is None for s in self._slots) >= _LIVE:
            return

        async def create() -> _Slot:
            return _Slot(self.rig.create())

        slot = self._call(create, within=MARGIN, what="create_executor()")
        self._slots.append(slot)
        self._log(f"create() -> {slot.executor.id}")
        state = slot.executor.state
        if state is not ExecutorState.STARTING:
            self._fail("state_matches", f"a new {slot.executor.id} is {state.value}, not starting")

    @rule(number=st.integers(0, 20))
    def start(self, number: int) -> None:
        if not self._live():
            return
        slot = self._slot(number, lambda s: not s.started and s.closed_by is None)
        if slot is None:
            return
        executor = slot.executor
        self._log(f"start({executor.id})")
        self._call(executor.start, within=self._bound(), what=f"start() of {executor.id}")
        slot.started = True
        if executor.state is not ExecutorState.READY:
            self._fail(
                "state_matches",
                f"start() of {executor.id} returned, but it is {executor.state.value}",
            )

    @rule(number=st.integers(0, 20), data=st.data(), timed=st.booleans())
    def submit(self, number: int, data: st.DataObject, timed: bool) -> None:
        fault = data.draw(faults(self.capabilities, sync=self._sync), label="fault")
        slot = self._slot(number, lambda s: True)
        if slot is None or not self._live():
            return
        executor = slot.executor

        run = _Run(fault, slot, timed=timed)

        def before(running: Running) -> None:
            # The state and the runs beside, read right before the call.
            run.beside = [r.running.job.id for r in self._active(slot) if r is not run]
            run.state_at_call = executor.state

        async def submit() -> None:
            assert self._tg is not None
            run.running = self.rig.launch(self._tg, executor, fault, before)
            if timed:
                run.running.scope.deadline = anyio.current_time() + TIMED
            while run.state_at_call is None:  # the run's task sets it, at once
                await anyio.lowlevel.checkpoint()

        self._call(submit, within=MARGIN, what=f"run_job() on {executor.id}")
        state, beside = run.state_at_call, run.beside
        assert state is not None, "run_job() was not called"
        self._runs.append(run)
        job_id = run.running.job.id
        self._log(
            f"submit({executor.id}, {fault}{', timed' if timed else ''}) -> {job_id} "
            f"(executor {state.value})"
        )
        self._call(self._ended_or_began, run, within=self._bound(), what=f"run_job({job_id})")
        refused = run.running.ended == "refused"
        if state is ExecutorState.READY and not beside and refused:
            self._fail(
                "state_matches",
                f"{executor.id} reported ready, but run_job({job_id}) raised LaunchError",
            )
        if (state is not ExecutorState.READY or beside) and not refused:
            why = f"while {', '.join(beside)} ran" if beside else state.value
            if run.running.done.is_set() and run.running.ended != "refused":
                self._fail(
                    "refuses_unless_ready",
                    f"run_job({job_id}) on {executor.id} ({why}) did not raise LaunchError: "
                    f"it {run.running.ended}",
                )
            elif self.witness.began(job_id) is not None:
                self._fail(
                    "refuses_unless_ready",
                    f"run_job({job_id}) on {executor.id} ({why}) began the job's body",
                )

    @rule(number=st.integers(0, 20))
    def cancel(self, number: int) -> None:
        active = self._active()
        if not self._live() or not active:
            return
        run = active[number % len(active)]
        run.cancelled = True
        job_id = run.running.job.id
        self._log(f"cancel({job_id})")

        async def cancel() -> None:
            self.rig.cancel(run.running)
            await run.running.done.wait()

        self._call(cancel, within=self._stop_bound(), what=f"cancelled run_job({job_id})")

    @rule(number=st.integers(0, 20))
    def kill(self, number: int) -> None:
        if not self._live():
            return
        slot = self._slot(number, lambda s: s.closed_by is None)
        if slot is None:
            return
        executor = slot.executor
        self._log(f"kill({executor.id})")
        active = self._active(slot)
        for run in active:
            run.stopped = True
        self._call(executor.kill, within=MARGIN, what=f"kill() of {executor.id}")
        slot.closed_by = "kill"
        for run in active:  # their run_job must return promptly now
            self._watched.log.cancelled(f"run_job({run.running.job.id})")
        if executor.state is not ExecutorState.CLOSED:
            self._fail(
                "state_matches",
                f"kill() of {executor.id} returned, but it is {executor.state.value}",
            )
        bound = MARGIN if self.capabilities.can_kill_running_job else self._stop_bound()
        self._call(self._until_done, active, within=bound, what="run_job after kill()")

    @rule(number=st.integers(0, 20))
    def close(self, number: int) -> None:
        """aclose() of an executor that runs nothing (the pool closes no busy one)."""
        if not self._live():
            return
        slot = self._slot(number, lambda s: s.closed_by is None and not self._active(s))
        if slot is None:
            return
        executor = slot.executor
        self._log(f"close({executor.id})")
        within = self.config.close_timeout
        self._call(executor.aclose, within=within, what=f"aclose() of {executor.id}")
        slot.closed_by = "aclose"
        if executor.state is not ExecutorState.CLOSED:
            self._fail(
                "state_matches",
                f"aclose() of {executor.id} returned, but it is {executor.state.value}",
            )

    @rule(number=st.integers(0, 20))
    def await_run(self, number: int) -> None:
        """Wait for a run that ends by itself."""
        if not self._live():
            return
        active = [r for r in self._active() if r.fault.kind not in ("hang", "ignore_cancel")]
        if not active:
            return
        run = active[number % len(active)]
        job_id = run.running.job.id
        self._log(f"await_run({job_id})")
        self._call(run.running.done.wait, within=self._bound(), what=f"run_job({job_id})")

    def teardown(self) -> None:
        try:
            if self._loop is not None and not self.loop.abandoned and self._tg is not None:

                async def finish() -> None:
                    for slot in self._slots:
                        with anyio.move_on_after(MARGIN):
                            await slot.executor.kill()
                    with anyio.move_on_after(self._stop_bound()):
                        await self._until_done(self._active())
                    assert self._leave is not None
                    self._leave.set()

                with contextlib.suppress(AssertionError):
                    self._call(finish, within=3 * self._bound(), what="closing every executor")
                    self._held.result(timeout=self._bound())
        finally:
            self._exit()

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        if self._loop is None or self._failed or self._tg is None or self._idle:
            return

        async def look() -> list[tuple[_Slot, ExecutorState, bool]]:
            # states and runs read at one instant of the loop
            return [(slot, slot.executor.state, bool(self._active(slot))) for slot in self._slots]

        states = self._call(look, within=MARGIN, what="reading the executors")
        for run in self._runs:
            if run.running.done.is_set() and not run.checked:
                run.checked = True
                self._check_run(run)
        for slot, state, running in states:
            if state is ExecutorState.BUSY and not running:
                self._fail("state_matches", f"{slot.executor.id} reports busy, running no job")
            began = [r for r in self._active(slot) if self.witness.began(r.running.job.id)]
            if began and state not in (
                ExecutorState.BUSY,
                ExecutorState.CLOSING,
                ExecutorState.CLOSED,
            ):
                job_id = began[0].running.job.id
                self._fail(
                    "state_matches", f"{slot.executor.id} reports {state.value} while {job_id} runs"
                )
        self.witness.settle()
        may_run_on = set()
        if not self.capabilities.can_kill_running_job:
            may_run_on = {r.running.job.id for r in self._runs if r.stopped}
        problems = self.witness.problems(may_run_on=may_run_on)
        if problems:
            self._fail("witnessed", "; ".join(problems))

    def _check_run(self, run: _Run) -> None:
        """A run that returned: it ended once, as its job and the calls around it allow."""
        running = run.running
        job_id, ended = running.job.id, running.ended
        executor = run.slot.executor.id
        if ended == "refused":
            if self.witness.began(job_id) is not None:
                self._fail(
                    "refuses_unless_ready",
                    f"run_job({job_id}) on {executor} raised LaunchError after its body began",
                )
            return
        if ended.startswith("raised"):
            self._fail(
                "every_ending_is_an_outcome",
                f"run_job({job_id}) of {run.fault} on {executor} {ended}: {running.error!r}",
            )
        outcome = running.outcome
        if ended == "cancelled" or outcome is None:
            if not (run.cancelled or run.timed):
                self._fail("one_outcome", f"run_job({job_id}) was cancelled, by nobody")
            return
        if outcome.job_id != job_id:
            self._fail(
                "outcomes_match_jobs",
                f"run_job({job_id}) on {executor} returned the outcome of {outcome.job_id}",
            )
        if run.stopped:
            return  # killed or closed under it: any failed outcome, or its own success
        if (run.cancelled or run.timed) and run.fault.kind in ("hang", "ignore_cancel"):
            self._fail(
                "cancellation_propagates",
                f"run_job({job_id}) on {executor}, cancelled, returned {outcome} instead of "
                "letting the cancellation propagate",
            )
        problem = outcome_problem(run.fault, outcome, self.capabilities)
        if problem is not None:
            self._fail("outcomes_match_jobs", f"{job_id} ({run.fault}) on {executor}: {problem}")
