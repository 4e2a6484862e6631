"""The bodies of the SL rules, each run on a :class:`~._slot.Rig` (see ``_rules.py``
for what each promises). A body returns ``None``, or a reason the rule does not apply to
this backend after all (found only by trying it)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import psutil

from ..._executor import ExecutorState
from ..._job import JobStatus
from ..jobs import Fault
from ._slot import (
    MARGIN,
    base_endings,
    is_sync,
    outcome_problem,
    resume,
    signal_body,
    state_of,
    wait_until,
)

if TYPE_CHECKING:
    from ..._executor import JobExecutor
    from ._slot import Rig, Running

#: seconds the rules' long jobs run when nothing stops them: far past any bound
LONG = 20.0
#: MiB a job allocates in the memory rules, and the rise health() must show
ALLOCATE_MB = 64
RISE_MB = 32


def _unstoppable(rig: Rig) -> Fault:
    """A job that only a kill of its slot stops: a sync job that never looks at
    ``cancel_requested``; an async job that waits (which only its task's cancellation
    ends)."""
    if is_sync(str(rig.config.entrypoint)):
        return Fault("ignore_cancel", LONG)
    return Fault("hang")


async def lifecycle(rig: Rig) -> None:
    """SL-1."""
    executor = rig.create()
    assert executor.state is ExecutorState.STARTING, (
        f"create_executor() made {executor.id} in state {executor.state.value}, not starting"
    )
    await rig.start(executor)
    assert state_of(executor) is ExecutorState.READY, (
        f"start() of {executor.id} returned, but its state is {executor.state.value}"
    )
    assert executor.health().alive, f"health() of the ready {executor.id} says it is not alive"
    payload = {"numbers": [1, 2, 3], "text": "é"}
    for _ in range(2 if rig.capabilities.reusable else 1):
        outcome = await rig.run(executor, Fault("echo", payload))
        assert outcome.status is JobStatus.SUCCEEDED, f"an echo on {executor.id} ended {outcome}"
        assert outcome.value == payload, f"an echo on {executor.id} returned {outcome.value!r}"
        if rig.capabilities.reusable:
            assert state_of(executor) is ExecutorState.READY, (
                f"{executor.id} reports {executor.state.value} after a job that succeeded, "
                "although the backend declares its executors reusable"
            )
    await rig.close(executor)
    assert not executor.health().alive, f"health() of the closed {executor.id} says alive"
    await _exited(executor)
    await _closed_stays_closed(rig, executor, "aclose()")
    killed = await rig.started()
    await rig.prompt(killed, "kill")
    assert killed.state is ExecutorState.CLOSED, (
        f"kill() of {killed.id} returned, but its state is {killed.state.value}"
    )
    await _closed_stays_closed(rig, killed, "kill()")
    never_started = rig.create()
    await rig.prompt(never_started, "aclose")
    assert never_started.state is ExecutorState.CLOSED, (
        f"aclose() of the never started {never_started.id} left it {never_started.state.value}"
    )
    await _closed_stays_closed(rig, never_started, "aclose() before start()")
    rig.check_witness()


async def _exited(executor: JobExecutor) -> None:
    """``wait_exited()``, where the backend provides it, returns once the executor is
    closed (the pool awaits it for every executor it has)."""
    wait_exited = getattr(executor, "wait_exited", None)
    if wait_exited is None:
        return
    with anyio.move_on_after(MARGIN) as late:
        await wait_exited()
    assert not late.cancelled_caught, (
        f"wait_exited() of {executor.id} did not return although it was closed"
    )


async def run_job_yields(rig: Rig) -> None:
    """SL-14: ``rig``'s entrypoint is echo or aecho, which finish without awaiting."""
    executor = await rig.started()
    for attempt in range(3):
        others = 0

        async def another_task() -> None:
            nonlocal others
            while True:
                others += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(another_task)
            await anyio.lowlevel.checkpoint()  # it runs, and waits for its next turn
            before = others
            job = rig.job(Fault("echo", attempt))  # an echo entrypoint returns its payload
            outcome = await executor.run_job(job)
            after = others
            tg.cancel_scope.cancel()
        rig.witness.delivered(job.id, outcome.status.value)
        assert after > before, (
            f"run_job({job.id}) on {executor.id} returned without yielding to the event "
            "loop: a loop of runs would starve every other task (await a checkpoint)"
        )


async def _closed_stays_closed(rig: Rig, executor: JobExecutor, how: str) -> None:
    for method in ("aclose", "kill", "aclose"):
        await rig.prompt(executor, method)
        assert executor.state is ExecutorState.CLOSED, (
            f"{method}() of {executor.id}, closed by {how}, left it {executor.state.value}"
        )


async def failed_start(rig: Rig) -> None:
    """SL-2: the setup raises."""
    executor = rig.create()
    error: BaseException | None = None
    within = rig.config.initialize_timeout
    with anyio.move_on_after(within) as late:
        try:
            await executor.start()
        except Exception as exc:
            error = exc
    assert not late.cancelled_caught, (
        f"start() of {executor.id}, whose setup raised, did not return within {within}s"
    )
    assert error is not None, (
        f"start() of {executor.id} returned although its setup raised "
        f"(state {executor.state.value})"
    )
    assert "injected setup failure" in _chain_text(error), (
        f"start() of {executor.id} raised {error!r}, which does not carry the setup's "
        "exception (InjectedFault: injected setup failure) as itself, its cause or its text"
    )
    assert executor.state is not ExecutorState.READY, (
        f"start() of {executor.id} raised, but the executor reports ready"
    )
    await rig.close(executor)


def _chain_text(error: BaseException) -> str:
    """The text of ``error``, its notes, and of the exceptions it was raised from."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [type(current).__name__, str(current), *getattr(current, "__notes__", [])]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def refuses_unless_ready(rig: Rig) -> None:
    """SL-3."""
    executor = rig.create()
    await rig.refused(executor, "before start()")
    await rig.start(executor)
    assert executor.state is ExecutorState.READY, (
        f"start() of {executor.id} after a refused job left it {executor.state.value}"
    )
    await rig.close(executor)
    await rig.refused(executor, "after aclose()")
    killed = await rig.started()
    await rig.prompt(killed, "kill")
    await rig.refused(killed, "after kill()")
    rig.check_witness()


async def one_job_at_a_time(rig: Rig) -> None:
    """SL-4."""
    executor = await rig.started()
    async with rig.runs() as tg:
        first = rig.launch(tg, executor, Fault("hang"))
        await rig.began(first)
        assert executor.state is ExecutorState.BUSY, (
            f"{executor.id} reports {executor.state.value} while {first.job.id} runs on it"
        )
        await rig.refused(executor, f"busy with {first.job.id}")
        rig.cancel(first)
        await rig.stopped(first, rig.config.close_timeout + MARGIN, "it was cancelled")
    rig.check_witness()
    await rig.honest(executor, "a cancelled job")


async def every_ending(rig: Rig) -> None:
    """SL-5."""
    caps = rig.capabilities
    faults = [
        Fault("echo", 7),
        Fault("raise", "boom"),
        *(Fault("raise_base", name) for name in base_endings(caps)),
        Fault("sleep", 0.0),
    ]
    if caps.isolates_crashes:
        faults.append(Fault("crash", 3))
    executor = await rig.started()
    after = ""
    for fault in faults:
        if after and executor.state is not ExecutorState.READY:
            # Not ready after the last ending: it must refuse, and a new one takes over.
            executor = await rig.honest(executor, after)
        # Ready: this job is the one that shows it runs the next job.
        outcome = await rig.run(executor, fault)
        problem = outcome_problem(fault, outcome, caps)
        assert problem is None, f"a job of {fault} on {executor.id}{after}: {problem}"
        after = f" (after a job of {fault})"
    await rig.honest(executor, after)
    rig.check_witness()


async def cancelled_run(rig: Rig) -> None:
    """SL-6: cancelled once the job runs, and as soon as run_job was called."""
    executor = await rig.started()
    bound = rig.config.close_timeout + MARGIN
    for when in ("while its body runs", "before its body began"):
        async with rig.runs() as tg:
            running = rig.launch(tg, executor, Fault("hang"))
            if when == "while its body runs":
                await rig.began(running)
            else:
                await anyio.lowlevel.checkpoint()
            rig.cancel(running)
            await rig.stopped(running, bound, f"it was cancelled {when}")
        _check_cancelled(running, when)
        rig.check_witness()
        if when == "while its body runs":
            rig.ended_before_outcome(running)
        executor = await rig.honest(executor, f"a run_job cancelled {when}")


def _check_cancelled(running: Running, when: str) -> None:
    job = running.job.id
    if running.ended == "returned":
        assert running.outcome is not None
        msg = (
            f"run_job({job}), cancelled {when}, returned {running.outcome} instead of "
            "letting the cancellation propagate (the pool reports why it cancelled)"
        )
        raise AssertionError(msg)
    assert running.ended in ("cancelled", "refused"), (
        f"run_job({job}), cancelled {when}, ended: {running.ended}"
    )


async def cancelled_start(rig: Rig) -> None:
    """SL-7: the setup hangs; start() is cancelled at a short deadline."""
    executor = rig.create()
    deadline = 0.5
    returned = False
    with anyio.move_on_after(deadline):
        await executor.start()
        returned = True
    assert not returned, (
        f"start() of {executor.id} returned (state {executor.state.value}) although its setup hangs"
    )
    assert executor.state is not ExecutorState.READY, (
        f"start() of {executor.id} was cancelled, but the executor reports ready"
    )
    await rig.close(executor)


async def kill_running_job(rig: Rig) -> None:
    """SL-8."""
    executor = await rig.started()
    killable = rig.capabilities.can_kill_running_job
    fault = _unstoppable(rig) if killable else Fault("hang")
    bound = MARGIN if killable else rig.config.close_timeout + MARGIN
    async with rig.runs() as tg:
        running = rig.launch(tg, executor, fault)
        await rig.began(running)
        await rig.prompt(executor, "kill")
        rig.backend.log.cancelled(f"run_job({running.job.id})")  # it must return promptly
        await rig.stopped(running, bound, f"kill() of {executor.id}")
    assert running.outcome is not None, (
        f"run_job({running.job.id}) on the killed {executor.id} ended: {running.ended} "
        "(a kill is an outcome, not an exception)"
    )
    if killable:  # elsewhere the job, asked to stop, may return its own value
        assert running.outcome.status is not JobStatus.SUCCEEDED, (
            f"run_job({running.job.id}) on the killed {executor.id} returned a success"
        )
    assert executor.state is ExecutorState.CLOSED, (
        f"kill() of {executor.id} returned, but its state is {executor.state.value}"
    )
    rig.check_witness(may_run_on=() if killable else (running.job.id,))
    await rig.refused(executor, "after kill()")
    await rig.prompt(executor, "kill")
    await rig.prompt(executor, "aclose")


async def wear(rig: Rig, jobs: int, seconds: float) -> int:
    """SL-9: ``jobs`` jobs in a row on one slot, each ending a way that keeps it, or as
    many as ``seconds`` allow (a backend that starts a process per job is slow); returns
    how many ran."""
    faults = [Fault("echo", 0), Fault("raise", "worn"), Fault("sleep", 0.0), Fault("echo", "x")]
    executor = await rig.started()
    ends = anyio.current_time() + seconds
    ran = 0
    while ran < jobs and anyio.current_time() <= ends:
        fault = faults[ran % len(faults)]
        if fault.kind == "echo":
            fault = Fault("echo", [ran, fault.value])
        outcome = await rig.run(executor, fault)
        ran += 1
        problem = outcome_problem(fault, outcome, rig.capabilities)
        assert problem is None, f"job {ran} in a row on {executor.id} ({fault}): {problem}"
        assert executor.state is ExecutorState.READY, (
            f"{executor.id} reports {executor.state.value} after job {ran} in a row "
            f"({fault}), which ended as it should"
        )
    rig.check_witness()
    return ran


async def dead_when_killed(rig: Rig) -> str | None:
    """SL-10: the slot's process is killed from outside while idle."""
    executor = await rig.started()
    outcome = await rig.run(executor, Fault("echo", "where"))
    began = rig.witness.began(outcome.job_id)
    if began is None or began.pid is None or not _alive(began.pid):
        return "the slot keeps no process between jobs: there is nothing to kill while idle"
    signal_body(rig, outcome.job_id, signal.SIGKILL)
    within = rig.config.ping_interval + MARGIN
    noticed = await wait_until(lambda: not executor.health().alive, within)
    assert noticed, (
        f"health() of {executor.id} still says alive {within:.1f}s after its process "
        f"{began.pid} was killed"
    )
    wait_exited = getattr(executor, "wait_exited", None)
    if wait_exited is not None:
        with anyio.move_on_after(MARGIN) as late:
            await wait_exited()
        assert not late.cancelled_caught, (
            f"wait_exited() of {executor.id} did not return although its process is dead"
        )
    assert executor.state is not ExecutorState.READY, (
        f"{executor.id} still reports ready although its process {began.pid} is dead"
    )
    await rig.refused(executor, "its process is dead")
    await rig.prompt(executor, "aclose")
    return None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def measures_memory(rig: Rig) -> None:
    """SL-11: a job holds ALLOCATE_MB MiB; health() must show them."""
    executor = await rig.started()
    base = executor.health().memory_mb
    assert base is not None, (
        f"health() of {executor.id} reports no memory_mb, although the backend declares "
        "measures_memory"
    )
    within = rig.config.ping_interval + MARGIN
    async with rig.runs() as tg:
        running = rig.launch(tg, executor, Fault("allocate", ALLOCATE_MB, hold=LONG))
        await rig.began(running)
        rose = await wait_until(
            lambda: (executor.health().memory_mb or 0) >= base + RISE_MB, within
        )
        seen = executor.health().memory_mb
        rig.cancel(running)
        await rig.stopped(running, rig.config.close_timeout + MARGIN, "it was cancelled")
    assert rose, (
        f"health().memory_mb of {executor.id} went from {base:.1f} to {seen} MiB while its "
        f"job held {ALLOCATE_MB} MiB more (expected a rise of {RISE_MB} MiB at least)"
    )
    rig.check_witness()
    await rig.honest(executor, "a cancelled job that held memory")


async def wedged(rig: Rig) -> str | None:
    """SL-12: the slot's process is stopped (SIGSTOP) while its job runs."""
    executor = await rig.started()
    interval = rig.config.ping_interval
    pings = await wait_until(lambda: executor.health().ping_latency is not None, 3 * interval)
    if not pings:
        return "health() of a ready executor reports no ping_latency: the backend does not ping"
    stalled = 1.0
    async with rig.runs() as tg:
        running = rig.launch(tg, executor, Fault("hang"))
        await rig.began(running)
        pid = signal_body(rig, running.job.id, signal.SIGSTOP)
        try:
            within = stalled + 3 * interval + MARGIN
            grew = await wait_until(lambda: (executor.health().ping_latency or 0) > stalled, within)
            latency = executor.health().ping_latency
        finally:
            resume(pid)
        rig.cancel(running)
        await rig.stopped(running, rig.config.close_timeout + MARGIN, "it was cancelled")
    assert grew, (
        f"health().ping_latency of {executor.id} was {latency} {within:.1f}s after its process "
        f"{pid} was stopped (SIGSTOP): a wedged executor would never be found unresponsive"
    )
    return None
