"""Real faults in real worker processes: signals, exits, memory, stopped workers,
cancellation, timeouts, and a host that is SIGKILLed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import termios
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import anyio
import psutil
import pytest
from process_helpers import (
    PATIENCE,
    config,
    gone,
    hold,
    pid_of,
    release,
    until,
    wait_until_gone,
)

from executors import ExecutorState, FailureReason, JobOutcome, JobStatus, open_pool
from executors.testing._program import Recorder

if TYPE_CHECKING:
    from executors import JobHandle, Pool

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


async def outcome_of(handle: JobHandle) -> JobOutcome:
    with anyio.fail_after(PATIENCE):
        return await handle.outcome()


def crash_message(outcome: JobOutcome) -> str:
    assert outcome.error is not None, outcome
    return outcome.error.message


async def test_a_worker_sigkilled_mid_job_ends_it_crashed_and_is_replaced(tmp_path: Path) -> None:
    payload = hold(tmp_path)
    async with open_pool(config()) as pool:
        handle = await pool.submit(payload)
        victim = await pid_of(payload)
        os.kill(victim, signal.SIGKILL)
        outcome = await outcome_of(handle)
        release(payload)
        with anyio.fail_after(PATIENCE):
            successor = await pool.run(payload)
    assert outcome.reason is FailureReason.CRASHED
    assert "killed by signal 9 (SIGKILL)" in crash_message(outcome)
    assert successor != victim


async def test_a_job_calling_os_exit_ends_crashed_with_its_exit_code() -> None:
    async with open_pool(config(entrypoint="process_jobs:exit_with")) as pool:
        outcome = await outcome_of(await pool.submit(3))
        with anyio.fail_after(PATIENCE):
            assert await pool.run(None) != os.getpid()
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is FailureReason.CRASHED
    assert "exit code 3" in crash_message(outcome)


async def test_invariant_9_drain_returns_and_kills_a_job_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    payload = hold(tmp_path, ignore_sigterm=True)
    cfg = config(drain_timeout=0.2, close_timeout=0.5)
    async with open_pool(cfg) as pool:
        handle = await pool.submit(payload)
        worker = await pid_of(payload)
        # drain_timeout + close_timeout plus a margin for a loaded machine
        with anyio.fail_after(0.2 + 0.5 + 5.0):
            await pool.drain()
        assert pool.statistics().idle + pool.statistics().busy == 0
    assert (await outcome_of(handle)).reason is FailureReason.POOL_CLOSED
    assert gone(worker)


async def test_a_job_over_memory_limit_mb_ends_memory_limit(tmp_path: Path) -> None:
    payload = hold(tmp_path, allocate_mb=300)
    cfg = config(memory_limit_mb=150, ping_interval=0.1)
    async with open_pool(cfg) as pool:
        outcome = await outcome_of(await pool.submit(payload))
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is FailureReason.MEMORY_LIMIT


async def test_a_worker_that_stops_answering_pings_ends_its_job_unresponsive() -> None:
    cfg = config(entrypoint="process_jobs:stop_own_process", ping_interval=0.1, ping_timeout=1)
    async with open_pool(cfg) as pool:
        outcome = await outcome_of(await pool.submit(True))
        with anyio.fail_after(PATIENCE):
            await pool.run(False)
    assert outcome.status is JobStatus.FAILED
    assert outcome.reason is FailureReason.UNRESPONSIVE


def _no_alarm(caplog: pytest.LogCaptureFixture) -> None:
    """A kill the pool meant is no executor failure: nothing was logged as a warning."""
    alarms = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert alarms == [], alarms


async def test_cancelling_a_running_job_kills_its_worker_and_the_pool_replaces_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = hold(tmp_path)
    recorder = Recorder()
    async with open_pool(config(), observers=[recorder]) as pool:
        handle = await pool.submit(payload)
        victim = await pid_of(payload)
        handle.cancel()
        outcome = await outcome_of(handle)
        await wait_until_gone([victim])
        release(payload)
        with anyio.fail_after(PATIENCE):
            successor = await pool.run(payload)
    assert outcome.status is JobStatus.CANCELLED
    assert outcome.reason is FailureReason.CANCELLED
    assert successor != victim
    # closed for what the pool did, not as broken
    assert recorder.closed_reasons[str(outcome.executor_id)] == "cancelled"
    _no_alarm(caplog)


async def test_job_timeout_ends_a_job_timed_out_and_kills_its_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = hold(tmp_path)
    recorder = Recorder()
    async with open_pool(config(job_timeout=0.3), observers=[recorder]) as pool:
        handle = await pool.submit(payload)
        worker = await pid_of(payload)
        outcome = await outcome_of(handle)
        await wait_until_gone([worker])
    assert outcome.status is JobStatus.TIMED_OUT
    assert outcome.reason is FailureReason.TIMED_OUT
    assert recorder.closed_reasons[str(outcome.executor_id)] == "timed_out"
    _no_alarm(caplog)


async def test_a_worker_that_dies_by_itself_is_the_only_one_closed_broken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with open_pool(config(entrypoint="process_jobs:exit_with"), observers=[recorder]) as pool:
        crashed = await outcome_of(await pool.submit(3))
    assert crashed.reason is FailureReason.CRASHED
    assert recorder.closed_reasons[str(crashed.executor_id)] == "broken"
    assert f"{crashed.executor_id} is broken" in caplog.text


# -- a SIGKILLed host ------------------------------------------------------------------------


class HostTree(TypedDict):
    """What ``process_pool_host.py`` reports about its process tree."""

    forkserver: int
    workers: list[int]
    descendants: list[int]


def _start_host(report: Path, log: Path) -> subprocess.Popen[bytes]:
    # Not anyio.open_process: on Python 3.11 asyncio watches the child from a thread of
    # its own, which may outlive the test by a moment and trip no_leaks().
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, str(HERE / "process_pool_host.py"), str(report)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _read_tree(report: Path, host: subprocess.Popen[bytes], log: Path) -> HostTree:
    assert report.exists(), f"the host exited early ({host.returncode}):\n{log.read_text()}"
    tree: HostTree = json.loads(report.read_text())
    return tree


def _kill_all(pids: list[int]) -> None:
    """Cleanup after a failed assertion: nothing of the host may outlive the test."""
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_workers_never_outlive_a_sigkilled_host(anyio_backend: str, tmp_path: Path) -> None:
    report, log = tmp_path / "report.json", tmp_path / "host.log"
    host = _start_host(report, log)
    family = [host.pid]
    try:
        await until(lambda: report.exists() or host.poll() is not None)
        tree = _read_tree(report, host, log)
        family += {tree["forkserver"], *tree["workers"], *tree["descendants"]}
        assert len(tree["workers"]) == 2, tree
        assert tree["forkserver"] in tree["descendants"], tree
        os.kill(host.pid, signal.SIGKILL)
        await until(lambda: host.poll() is not None)
        # Workers, the host's forkserver and its resource tracker: all of them go.
        await wait_until_gone(family[1:], within=2.0)
    except BaseException:
        _kill_all(family)
        raise
    finally:
        await until(lambda: host.poll() is not None)


async def test_an_idle_worker_that_dies_is_replaced_at_once_not_at_the_next_ping() -> None:
    # The health check runs once an hour here: the replacement comes from the pool
    # watching the worker's exit (wait_exited), within moments of the SIGKILL.
    cfg = config(entrypoint="process_jobs:pid", ping_interval=3600.0)
    async with open_pool(cfg) as pool:
        pid = await pool.run(None)
        started = pool.statistics().executors_started
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(PATIENCE):
            await pool.wait_until(lambda s: s.executors_started > started and s.idle == 1)
        assert await pool.run(None) != pid


def _unread_bytes(pool: Pool) -> int:
    """Bytes the pool has sent on its busy worker's job socket that the worker has not
    read (the kernel's count for the host's end of the socket pair)."""
    busy = [e for e in pool._executors.values() if e.state is ExecutorState.BUSY]
    sock = busy[0]._sock if busy else None  # type: ignore[attr-defined]
    if sock is None:  # the job is not sent yet
        return 0
    count = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int.from_bytes(count, sys.byteorder)


async def test_a_worker_killed_before_it_reads_its_job_is_replaced_and_the_job_runs_elsewhere() -> (
    None
):
    # The worker is stopped, so the job's frame waits unread in its socket when it is
    # SIGKILLed. The kernel then resets the connection instead of ending it: the pool
    # knows the job never started, and runs it on another worker (at-most-once holds).
    cfg = config(entrypoint="process_jobs:pid", idle_executors=1, max_executors=2)
    async with open_pool(cfg) as pool:
        stopped = await pool.run(None)
        os.kill(stopped, signal.SIGSTOP)
        try:
            handle = await pool.submit(None)
            await until(lambda: pool.statistics().busy == 1 and _unread_bytes(pool) > 0)
        finally:
            os.kill(stopped, signal.SIGKILL)
        with anyio.fail_after(PATIENCE):
            outcome = await handle.outcome()
    assert outcome.ok, outcome
    assert outcome.value != stopped
    assert outcome.attempts == 2
