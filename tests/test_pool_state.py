"""Invariants 1-10 of the pool on the pure state machine, under random event sequences.

The machine below plays the driver: it keeps what the driver would keep (spawns in
flight, runs in flight, closes in flight) and resolves them in random order with random
results, checking the invariants after every step. Thousands of steps a second.
"""

from __future__ import annotations

import collections
import copy
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from executors import FailureReason, Health, JobOutcome, JobStatus, LaunchError
from executors._pool_state import (
    Action,
    Admission,
    CancelJob,
    CancelSpawn,
    CloseExecutor,
    CloseReason,
    EndJob,
    FinishJob,
    KillExecutor,
    LaunchJob,
    Limits,
    PoolState,
    ReportUnhealthy,
    Slot,
    SpawnExecutor,
    WarnMemory,
)

limits_strategy = st.builds(
    Limits,
    idle_executors=st.integers(0, 3),
    max_executors=st.integers(3, 6),
    max_concurrent_initializations=st.integers(1, 3),
    max_jobs_per_executor=st.none() | st.integers(1, 3),
    acquire_attempts=st.integers(1, 3),
    launch_attempts=st.integers(1, 3),
    spawn_backoff=st.sampled_from([0.0, 0.1, 1.0]),
    spawn_backoff_max=st.just(5.0),
    consecutive_failure_limit=st.integers(1, 4),
    ping_timeout=st.just(30.0),
    memory_limit_mb=st.none() | st.just(500.0),
    memory_warn_mb=st.none() | st.just(100.0),
    max_pending=st.none() | st.integers(0, 3),
    when_full=st.sampled_from(["wait", "reject"]),
)


#: what the status of an outcome a backend returns implies of its reason
_REASON_OF = {
    JobStatus.SUCCEEDED: None,
    JobStatus.FAILED: FailureReason.RAISED,
    JobStatus.CANCELLED: FailureReason.CANCELLED,
    JobStatus.TIMED_OUT: FailureReason.TIMED_OUT,
}


def _outcome(job_id: str, status: JobStatus) -> JobOutcome:
    """What a backend's run_job returns for a run that ended with ``status``."""
    reason = _REASON_OF[status]
    return JobOutcome.success(job_id, 1) if reason is None else JobOutcome.failure(job_id, reason)


class Driver:
    """What the async driver keeps, and the checks of each action it receives."""

    def __init__(self, state: PoolState) -> None:
        self.state = state
        self.spawning: set[str] = set()
        self.running: dict[str, str] = {}  # job -> executor, from its launch to its end
        self.returned: set[str] = set()  # runs over, whose outcome waits for a kill
        self.killing: set[str] = set()  # kills in flight
        self.killed: set[str] = set()  # every executor ever killed
        self.stopped: set[str] = set()  # executors whose current run the pool stopped
        # the executor whose run ended last in this step, and whether the pool stopped it
        self.just_ended: tuple[str, bool] | None = None
        self.scoped: dict[str, bool] = {}
        self.memory_limits: dict[str, float | None] = {}
        self.cancel_requested: dict[str, FailureReason] = {}
        self.closing: set[str] = set()
        self.close_reasons: dict[str, CloseReason] = {}
        self.accepted: set[str] = set()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.reasons: dict[str, FailureReason | None] = {}
        self.ran: set[str] = set()  # jobs an executor accepted (ran at least in part)
        self.launches: collections.Counter[str] = collections.Counter()
        self.unhealthy_reports = 0
        self.spawn_delays: list[tuple[int, float]] = []
        self.now = 0.0

    def apply(self, actions: list[Action]) -> None:
        self.just_ended = None
        for action in actions:
            self._check(action)

    def _check(self, action: Action) -> None:
        match action:
            case SpawnExecutor(executor_id, delay):
                assert executor_id not in self.spawning
                self.spawning.add(executor_id)
                self.spawn_delays.append((self.state.consecutive_failures, delay))
            case LaunchJob(job_id, executor_id, attempt):
                # invariant 2: one job per slot, one slot per job
                assert executor_id not in self.running.values()
                assert job_id not in self.running
                # a killed executor is never handed a job again
                assert executor_id not in self.killed, f"{job_id} launched on killed {executor_id}"
                # invariant 5: a job that was accepted somewhere never runs again
                assert job_id not in self.ran, f"{job_id} relaunched after it ran"
                self.launches[job_id] += 1
                assert attempt == self.launches[job_id]
                self.running[job_id] = executor_id
            case CancelJob(job_id, executor_id, reason):
                # only a run that holds a cancel scope is cancelled through it
                assert self.scoped[job_id], f"{job_id} holds no scope"
                assert self.running.get(job_id) == executor_id
                self.cancel_requested.setdefault(job_id, reason)
                self.stopped.add(executor_id)
            case KillExecutor(executor_id, _):
                assert executor_id in self.running.values(), f"{executor_id} killed while not busy"
                assert executor_id not in self.killing, f"{executor_id} killed twice at once"
                self.killing.add(executor_id)
                self.killed.add(executor_id)
                self.stopped.add(executor_id)
            case CancelSpawn(executor_id):
                assert executor_id in self.spawning
            case CloseExecutor(executor_id, reason):
                assert executor_id not in self.closing
                assert executor_id not in self.running.values()
                # only an executor that failed by itself is broken, not one closed as
                # the run the pool stopped ends
                if reason is CloseReason.BROKEN:
                    assert self.just_ended != (executor_id, True), f"{executor_id}: broken?"
                self.closing.add(executor_id)
                self.close_reasons[executor_id] = reason
            case EndJob(job_id, executor_id, _, reason, attempt, _, _):
                assert self.running.get(job_id) == executor_id, f"{job_id} ended off its executor"
                assert attempt == self.launches[job_id]
                del self.running[job_id]
                self.just_ended = (executor_id, executor_id in self.stopped)
                self.stopped.discard(executor_id)
                self.returned.discard(job_id)
                self.ran.add(job_id)
                self.record_outcome(job_id, reason)
            case FinishJob(job_id, reason, _, _):
                assert job_id not in self.running
                self.record_outcome(job_id, reason)
            case ReportUnhealthy(count, _):
                self.unhealthy_reports += 1
                assert count == self.state.limits.consecutive_failure_limit
            case WarnMemory():
                pass

    def record_outcome(self, job_id: str, reason: FailureReason | None) -> None:
        assert job_id in self.accepted
        self.outcomes[job_id] += 1
        self.reasons[job_id] = reason
        # invariant 1: exactly one outcome, reported once
        assert self.outcomes[job_id] == 1, f"{job_id} got a second outcome"

    # -- events --

    def submit(
        self, job_id: str, *, scoped: bool = True, memory_limit_mb: float | None = None
    ) -> None:
        self.accepted.add(job_id)
        self.scoped[job_id] = scoped
        self.memory_limits[job_id] = memory_limit_mb
        self.apply(self.state.submit(job_id, scoped=scoped, memory_limit_mb=memory_limit_mb))

    def spawn_ok(self, executor_id: str) -> None:
        self.spawning.remove(executor_id)
        self.apply(self.state.spawn_succeeded(executor_id))

    def spawn_fail(self, executor_id: str) -> None:
        self.spawning.remove(executor_id)
        self.apply(self.state.spawn_failed(executor_id, RuntimeError("setup failed")))

    def job_end(
        self, job_id: str, status: JobStatus | None, *, reusable: bool, abandoned: bool = False
    ) -> None:
        """The run returned an outcome of ``status`` (None: it was cancelled)."""
        executor_id = self.running[job_id]
        self.returned.add(job_id)
        outcome = None if status is None else _outcome(job_id, status)
        self.apply(
            self.state.run_ended(
                job_id, executor_id, outcome, reusable=reusable, abandoned=abandoned
            )
        )

    def stale_answer(self, job_id: str) -> None:
        self.returned.add(job_id)
        other = JobOutcome.success("some-other-job", 1)
        self.apply(self.state.run_ended(job_id, self.running[job_id], other, reusable=True))

    def interrupted(self, job_id: str, *, reusable: bool) -> None:
        self.returned.add(job_id)
        self.apply(self.state.run_interrupted(job_id, self.running[job_id], reusable=reusable))

    def not_started(self, job_id: str) -> None:
        self.returned.add(job_id)
        self.apply(self.state.run_not_started(job_id, self.running[job_id]))

    def launch_error(self, job_id: str) -> None:
        executor_id = self.running.pop(job_id)
        self.cancel_requested.pop(job_id, None)
        self.apply(self.state.run_raised(job_id, executor_id, LaunchError("refused")))

    def raised(self, job_id: str) -> None:
        """run_job raised something else than LaunchError: the contract is broken."""
        self.returned.add(job_id)
        self.apply(self.state.run_raised(job_id, self.running[job_id], RuntimeError("bug")))

    def kill_done(self, executor_id: str) -> None:
        self.killing.remove(executor_id)
        self.apply(self.state.kill_done(executor_id))

    def health(self, executor_id: str, health: Health) -> None:
        self.now += 1.0
        record = self.state.executors[executor_id]
        job_id, killed_before = record.job_id, record.kill_reason is not None
        actions = self.state.health_checked(executor_id, health, self.now)
        self.apply(actions)
        # A busy executor is held to the lower of the pool's and its job's memory limits.
        limits = [self.state.limits.memory_limit_mb]
        if job_id is not None:
            limits.append(self.memory_limits[job_id])
        limit = min((m for m in limits if m is not None), default=None)
        over = (
            health.alive
            and (health.ping_latency is None or health.ping_latency <= 30.0)
            and health.memory_mb is not None
            and limit is not None
            and health.memory_mb > limit
        )
        killed = any(
            isinstance(a, KillExecutor) and a.reason is FailureReason.MEMORY_LIMIT for a in actions
        )
        closed = any(
            isinstance(a, CloseExecutor) and a.reason is CloseReason.MEMORY_LIMIT for a in actions
        )
        if job_id is not None and not killed_before:
            assert killed == over, f"{executor_id} at {health.memory_mb} MiB, limit {limit}"
        if job_id is None:
            assert closed == (over and record.slot is Slot.CLOSING), (executor_id, health)

    def close_done(self, executor_id: str) -> None:
        self.closing.remove(executor_id)
        self.apply(self.state.executor_closed(executor_id))

    def live_runs(self) -> list[str]:
        """Runs still in run_job (not over)."""
        return sorted(set(self.running) - self.returned)

    def settle_without_faults(self, budget: int = 500) -> None:
        """Resolve everything in flight successfully until nothing is left."""
        for _ in range(budget):
            if self.spawning:
                self.spawn_ok(min(self.spawning))
            elif self.killing:
                self.kill_done(min(self.killing))
            elif live := self.live_runs():
                job_id = live[0]
                killed = self.running[job_id] in self.killed
                status = JobStatus.FAILED if killed else JobStatus.SUCCEEDED
                self.job_end(job_id, status, reusable=not killed)
            elif self.closing:
                self.close_done(min(self.closing))
            else:
                return
        raise AssertionError("the pool did not settle: it keeps acting without faults")


_ENDS = [
    "succeeded",
    "raised",
    "crashed",
    "cancelled",
    "abandoned",
    "launch_error",
    "contract_breach",
    "stale",
    "interrupted",
    "not_started",
]

healths = st.builds(
    Health,
    alive=st.booleans(),
    memory_mb=st.none() | st.sampled_from([10.0, 150.0, 600.0]),
    ping_latency=st.none() | st.sampled_from([0.01, 5.0, 60.0]),
)


class PoolStateMachine(RuleBasedStateMachine):
    """Random events against the pure pool state machine; invariants after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.driver: Driver
        self.serial = 0

    @initialize(limits=limits_strategy, seed=st.integers(0, 2**32))
    def open_pool(self, limits: Limits, seed: int) -> None:
        self.driver = Driver(PoolState(limits, random.Random(seed)))
        self.driver.apply(self.driver.state.start())

    @property
    def state(self) -> PoolState:
        return self.driver.state

    # -- rules: events --

    @precondition(lambda self: self.state.admission() is Admission.ACCEPT)
    @rule(scoped=st.booleans(), memory_limit_mb=st.none() | st.sampled_from([100.0, 800.0]))
    def submit(self, scoped: bool, memory_limit_mb: float | None) -> None:
        self.serial += 1
        self.driver.submit(f"job-{self.serial}", scoped=scoped, memory_limit_mb=memory_limit_mb)

    @precondition(lambda self: bool(self.driver.spawning))
    @rule(data=st.data(), ok=st.booleans())
    def spawn_settles(self, data: st.DataObject, ok: bool) -> None:
        executor_id = data.draw(st.sampled_from(sorted(self.driver.spawning)))
        (self.driver.spawn_ok if ok else self.driver.spawn_fail)(executor_id)

    @precondition(lambda self: bool(self.driver.live_runs()))
    @rule(data=st.data(), end=st.sampled_from(_ENDS))
    def run_settles(self, data: st.DataObject, end: str) -> None:
        d = self.driver
        job_id = data.draw(st.sampled_from(d.live_runs()))
        if end == "not_started" and self.state.may_start(job_id):
            end = "interrupted"  # the caller was cancelled as the launch was handed over
        if end == "launch_error":
            d.launch_error(job_id)
        elif end == "contract_breach":
            d.raised(job_id)
        elif end == "stale":
            d.stale_answer(job_id)
        elif end == "interrupted":
            d.interrupted(job_id, reusable=data.draw(st.booleans()))
        elif end == "not_started":
            d.not_started(job_id)
        elif end == "succeeded":
            d.job_end(job_id, JobStatus.SUCCEEDED, reusable=True)
        elif end == "raised":
            d.job_end(job_id, JobStatus.FAILED, reusable=True)
        elif end == "cancelled":
            d.job_end(job_id, None, reusable=data.draw(st.booleans()))
        elif end == "abandoned":
            d.job_end(job_id, None, reusable=False, abandoned=True)
        else:
            d.job_end(job_id, JobStatus.FAILED, reusable=False)

    @precondition(lambda self: bool(self.driver.killing))
    @rule(data=st.data())
    def kill_settles(self, data: st.DataObject) -> None:
        self.driver.kill_done(data.draw(st.sampled_from(sorted(self.driver.killing))))

    @precondition(lambda self: bool(self.driver.closing))
    @rule(data=st.data())
    def close_settles(self, data: st.DataObject) -> None:
        self.driver.close_done(data.draw(st.sampled_from(sorted(self.driver.closing))))

    @precondition(lambda self: bool(self.state.jobs))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.driver.apply(self.state.cancel(data.draw(st.sampled_from(sorted(self.state.jobs)))))

    @precondition(lambda self: bool(self.state.supervised()))
    @rule(data=st.data(), health=healths)
    def supervisor_reads_health(self, data: st.DataObject, health: Health) -> None:
        executor_id = data.draw(st.sampled_from(self.state.supervised()))
        self.driver.health(executor_id, health)

    @rule(data=st.data())
    def change_idle_target(self, data: st.DataObject) -> None:
        target = data.draw(st.integers(0, self.state.limits.max_executors))
        self.driver.apply(self.state.set_idle_target(target))

    @precondition(lambda self: not self.state.draining)
    @rule()
    def drain(self) -> None:
        self.driver.apply(self.state.drain())

    @precondition(lambda self: self.state.draining and not self.state.aborted)
    @rule()
    def drain_times_out(self) -> None:
        self.driver.apply(self.state.abort())

    # -- invariants --

    @invariant()
    def invariant_1_exactly_one_outcome(self) -> None:
        d = self.driver
        finished = {j for j, n in d.outcomes.items() if n}
        assert all(n == 1 for n in d.outcomes.values())
        assert finished.isdisjoint(self.state.jobs)
        assert finished | set(self.state.jobs) == d.accepted, "a job was lost"

    @invariant()
    def invariant_2_one_job_per_slot(self) -> None:
        busy = {r.id: r.job_id for r in self.state.executors.values() if r.slot is Slot.BUSY}
        assert busy == {e: j for j, e in self.driver.running.items()}
        assert all(job is not None for job in busy.values())
        assert set(self.state.idle) == {
            r.id for r in self.state.executors.values() if r.slot is Slot.IDLE
        }
        assert not self.driver.killed & set(self.state.idle), "a killed executor is idle"

    @invariant()
    def invariant_3_acquisition_never_hangs(self) -> None:
        state = self.state
        starting = {r.id for r in state.executors.values() if r.slot is Slot.STARTING}
        for job_id in state.waiting:
            job = state.jobs[job_id]
            assert job.failed_cycles < state.limits.acquire_attempts
            # the cycle a job waits on is made only of spawns in flight, and it has one
            # whenever anything is starting
            assert job.cycle is not None
            assert job.id in job.cycle.jobs
            assert job.cycle.spawns <= starting
            assert bool(job.cycle.spawns) == bool(starting)
        if state.waiting:
            # A waiting job always has something on its way: a spawn in flight, or a pool
            # so full that an executor must free up first.
            assert not state.idle
            assert (
                state.count(Slot.STARTING) > 0 or len(state.executors) >= state.limits.max_executors
            ), "jobs wait but nothing is starting and there is room"
        # a run whose outcome waits for a kill has one in flight
        for job_id in self.driver.returned:
            assert self.driver.running[job_id] in self.driver.killing, f"{job_id} waits forever"

    @invariant()
    def slot_counters_match_the_records(self) -> None:
        for slot in Slot:
            assert self.state.count(slot) == sum(
                1 for r in self.state.executors.values() if r.slot is slot
            )

    @invariant()
    def invariant_4_nothing_warmed_is_dropped(self) -> None:
        d = self.driver
        starting = {r.id for r in self.state.executors.values() if r.slot is Slot.STARTING}
        closing = {r.id for r in self.state.executors.values() if r.slot is Slot.CLOSING}
        assert starting == d.spawning
        assert closing == d.closing
        # every executor the driver holds is known to the state, in exactly one slot
        assert set(self.state.executors) == (
            d.spawning | d.closing | set(d.running.values()) | set(self.state.idle)
        )

    @invariant()
    def invariant_5_at_most_once_execution(self) -> None:
        for job_id, launches in self.driver.launches.items():
            assert launches <= self.state.limits.launch_attempts, job_id

    @invariant()
    def invariant_6_bounds(self) -> None:
        limits = self.state.limits
        assert self.state.count(Slot.STARTING) <= limits.max_concurrent_initializations
        assert len(self.state.executors) <= limits.max_executors

    @invariant()
    def backpressure(self) -> None:
        state, limit = self.state, self.state.limits.max_pending
        admission = state.admission()
        if state.draining:
            assert admission is Admission.CLOSED
        elif limit is None or len(state.waiting) < limit:
            assert admission is Admission.ACCEPT
        else:
            assert admission is (
                Admission.WAIT if state.limits.when_full == "wait" else Admission.FULL
            )

    @invariant()
    def invariant_7_convergence(self) -> None:
        if self.state.draining:
            return
        future = copy.deepcopy(self.driver)
        future.settle_without_faults()
        assert len(future.state.idle) == future.state.idle_target
        assert not future.state.jobs

    @invariant()
    def invariant_8_no_crash_loop(self) -> None:
        limits = self.state.limits
        for failures, delay in self.driver.spawn_delays:
            if failures == 0:
                assert delay == 0
            else:
                ceiling = min(limits.spawn_backoff_max, limits.spawn_backoff * 2 ** (failures - 1))
                assert ceiling / 2 <= delay <= ceiling
        assert self.state.healthy == (
            self.state.consecutive_failures < limits.consecutive_failure_limit
        )

    @invariant()
    def invariant_9_and_10_drain_settles_and_leaves_nothing(self) -> None:
        if not self.state.draining:
            return
        future = copy.deepcopy(self.driver)
        future.apply(future.state.abort())
        # after abort, runs end as cancelled (or killed) and spawns as failed
        for _ in range(200):
            if future.killing:
                future.kill_done(min(future.killing))
            elif live := future.live_runs():
                future.job_end(live[0], None, reusable=False)
            elif future.spawning:
                future.spawn_fail(min(future.spawning))
            elif future.closing:
                future.close_done(min(future.closing))
            else:
                break
        assert future.state.settled, "drain left executors or jobs behind"
        assert sum(future.outcomes.values()) == len(future.accepted)


TestPoolStateMachine = PoolStateMachine.TestCase
TestPoolStateMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


@given(limits=limits_strategy)
@settings(max_examples=200, deadline=None)
def test_invariant_3_every_spawn_failing_fails_the_job_after_acquire_attempts_cycles(
    limits: Limits,
) -> None:
    driver = Driver(PoolState(limits))
    driver.apply(driver.state.start())
    driver.submit("job")
    failures = 0
    while not driver.outcomes["job"]:
        # fail spawns one at a time, oldest first, while the pool keeps respawning
        driver.spawn_fail(min(driver.spawning, key=lambda e: int(e.split("-")[1])))
        failures += 1
        for executor_id in sorted(driver.closing):
            driver.close_done(executor_id)
        assert failures <= limits.acquire_attempts * limits.max_concurrent_initializations
    assert driver.reasons["job"] is FailureReason.ACQUIRE_FAILED
    assert failures >= limits.acquire_attempts


def test_invariant_3_a_peer_spawn_in_flight_burns_no_attempt() -> None:
    limits = Limits(
        idle_executors=0, max_executors=4, max_concurrent_initializations=4, acquire_attempts=1
    )
    driver = Driver(PoolState(limits))
    for job in ("a", "b"):
        driver.submit(job)
    assert len(driver.spawning) == 2
    first, second = sorted(driver.spawning)
    driver.spawn_fail(first)
    # the peer is still starting: no job has failed, although acquire_attempts is 1
    assert not driver.outcomes
    driver.spawn_ok(second)
    assert driver.running == {"a": second}


def _busy_pool_with_a_waiting_job(spawn_failures: int) -> tuple[Driver, str]:
    """A pool of two executors: "first" runs on one, the other fails to start, and
    "second" waits while ``spawn_failures`` replacement spawns fail in a row."""
    limits = Limits(
        idle_executors=1, max_executors=2, max_concurrent_initializations=1, acquire_attempts=2
    )
    driver = Driver(PoolState(limits))
    driver.apply(driver.state.start())
    driver.spawn_ok(next(iter(driver.spawning)))
    for job in ("first", "second"):
        driver.submit(job)
    busy = driver.running["first"]
    for _ in range(spawn_failures):
        driver.spawn_fail(next(iter(driver.spawning)))
        for executor_id in sorted(driver.closing):
            driver.close_done(executor_id)
    return driver, busy


def test_invariant_3_a_busy_executor_keeps_the_waiting_job_from_failing() -> None:
    # The waiting job would fail after 2 failed cycles; 5 fail while "first" runs.
    driver, busy = _busy_pool_with_a_waiting_job(spawn_failures=5)
    assert "second" not in driver.outcomes
    driver.job_end("first", JobStatus.SUCCEEDED, reusable=True)
    assert driver.running == {"second": busy}


def test_invariant_3_once_the_busy_executor_is_gone_cycles_count_again() -> None:
    driver, _ = _busy_pool_with_a_waiting_job(spawn_failures=5)
    # "first" fails and its executor is not reusable (its worker died): nothing is busy
    driver.job_end("first", JobStatus.FAILED, reusable=False)
    for executor_id in sorted(driver.closing):
        driver.close_done(executor_id)
    failures = 0
    while "second" not in driver.outcomes:
        driver.spawn_fail(next(iter(driver.spawning)))
        failures += 1
        assert failures <= driver.state.limits.acquire_attempts
    assert driver.reasons["second"] is FailureReason.ACQUIRE_FAILED


@pytest.mark.parametrize("failures", [1, 3, 5])
def test_invariant_8_unhealthy_is_reported_once_at_the_limit(failures: int) -> None:
    limits = Limits(
        idle_executors=1,
        max_executors=2,
        max_concurrent_initializations=1,
        consecutive_failure_limit=3,
    )
    driver = Driver(PoolState(limits))
    driver.apply(driver.state.start())
    for _ in range(failures):
        driver.spawn_fail(min(driver.spawning))
        driver.close_done(min(driver.closing))
    assert driver.unhealthy_reports == (1 if failures >= 3 else 0)
    assert driver.state.healthy == (failures < 3)
    driver.spawn_ok(min(driver.spawning))
    assert driver.state.healthy
