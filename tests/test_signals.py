"""Signals to ``executors run``, with real signals and real processes: the first SIGINT or
SIGTERM drains the pool, the second cancels what still runs, and SIGKILL leaves no
worker behind.

Each test runs ``python -m executors run`` in a subprocess on jobs of ``tests.jobs`` that
write a marker file (holding their process id) when they start, and waits for those
markers, or for a line on the program's stderr, before it signals: never for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
#: bound on every wait for the program: starting workers on a busy machine is slow
STARTUP = 60.0
CLOSE_TIMEOUT = 5.0
#: added to every duration bound: a loaded two-core machine stalls for seconds
MARGIN = 15.0
DRAINING = "received: submitting no more jobs"
SUMMARY = re.compile(r"(\d+) ok, (\d+) failed(?:, (\d+) not run)?")


def _env() -> dict[str, str]:
    """The caller's environment without EXECUTORS_* variables."""
    return {name: value for name, value in os.environ.items() if not name.startswith("EXECUTORS_")}


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    directory = tmp_path / "started"
    directory.mkdir()
    return directory


def _start(
    markers: Path,
    *,
    seconds: float,
    jobs: int = 4,
    backend: str = "process",
    host_loop: str = "asyncio",
    drain_timeout: float = 30.0,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``executors run`` of ``jobs`` jobs sleeping ``seconds``, two at a time; with
    ``new_session``, in a process group of its own, as a terminal's foreground job."""
    entrypoint = "tests.jobs:asleep_marked" if backend == "coroutine" else "tests.jobs:sleep_marked"
    payload = json.dumps({"dir": str(markers), "seconds": seconds})
    argv = [
        *(sys.executable, "-m", "executors", "run", entrypoint, "--quiet"),
        *("--jobs", str(jobs), "--concurrency", "2", "--payload", payload),
        *("--backend", backend, "--host-loop", host_loop),
        *("--set", "max_executors=2", "--set", "idle_executors=2"),
        *("--set", f"drain_timeout={drain_timeout}", "--set", f"close_timeout={CLOSE_TIMEOUT}"),
    ]
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=new_session,
    )


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Programs a test started: each is killed (if still running) and reaped after it."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.communicate()


def _started_jobs(markers: Path, count: int, proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """Wait until ``count`` jobs have started; return their ids and process ids."""
    deadline = time.monotonic() + STARTUP
    while True:
        started = {path.name: int(path.read_text()) for path in markers.glob("*-job-*[0-9]")}
        if len(started) >= count:
            return started
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the program exited with {proc.returncode}:\n{out.decode()}{err.decode()}")
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(started)} of {count} jobs started within {STARTUP} s")
        time.sleep(0.05)


def _wait_for_stderr(proc: subprocess.Popen[bytes], text: str) -> bytes:
    """Read the program's stderr until ``text`` appears; return what was read."""
    assert proc.stderr is not None
    read = b""
    deadline = time.monotonic() + STARTUP
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while text.encode() not in read:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                pytest.fail(f"no {text!r} on stderr within {STARTUP} s: {read.decode()}")
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                pytest.fail(f"stderr closed before {text!r} appeared: {read.decode()}")
            read += chunk
    return read


def _finish(proc: subprocess.Popen[bytes], within: float, err: bytes = b"") -> tuple[str, str]:
    """Wait for the program to exit, ``within`` seconds at most; return stdout, stderr."""
    try:
        out, rest = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the program did not exit within {within} s")
    return out.decode(), (err + rest).decode()


def _counts(out: str) -> tuple[int, int, int]:
    """ok, failed and not run, from the summary."""
    match = SUMMARY.search(out)
    assert match is not None, out
    ok, failed, not_run = match.groups()
    return int(ok), int(failed), int(not_run or 0)


@pytest.mark.parametrize(
    ("backend", "host_loop"),
    [("process", "asyncio"), ("thread", "trio"), ("coroutine", "asyncio")],
)
def test_sigterm_drains_running_jobs_and_exits_0(
    backend: str, host_loop: str, markers: Path, running: list[subprocess.Popen[bytes]]
) -> None:
    seconds = 2.0
    proc = _start(markers, seconds=seconds, backend=backend, host_loop=host_loop)
    running.append(proc)
    _started_jobs(markers, 2, proc)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = _finish(proc, within=seconds + CLOSE_TIMEOUT + MARGIN)
    assert proc.returncode == 0, out + err
    assert time.monotonic() - signalled < seconds + CLOSE_TIMEOUT + MARGIN
    ok, failed, not_run = _counts(out)
    # The running jobs finished; the others were never submitted. On a very slow machine
    # a third job may have been submitted before the signal came: it ran to its end too.
    assert (failed, ok + not_run) == (0, 4), out
    assert ok >= 2, out
    assert "stopped  by SIGTERM: drained" in out
    assert "SIGTERM received" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_to_the_whole_process_group_drains(
    signum: signal.Signals, markers: Path, running: list[subprocess.Popen[bytes]]
) -> None:
    # A terminal sends Ctrl-C's SIGINT to every process of its foreground group, and
    # `kill -TERM -PGID` (or a service manager) sends SIGTERM to all of them: the
    # workers and the forkserver they fork from ignore both, and the host drains.
    seconds = 2.0
    proc = _start(markers, seconds=seconds, new_session=True)
    running.append(proc)
    started = _started_jobs(markers, 2, proc)
    workers = [psutil.Process(pid) for pid in started.values()]
    os.killpg(proc.pid, signum)
    out, err = _finish(proc, within=seconds + CLOSE_TIMEOUT + MARGIN)
    assert proc.returncode == 0, out + err
    ok, failed, not_run = _counts(out)
    assert (failed, ok + not_run) == (0, 4), out
    assert ok >= 2, out
    assert f"stopped  by {signum.name}: drained" in out
    # the workers ran their jobs to the end and were shut down, not killed by the signal
    assert "crashed" not in out, out
    for worker in workers:
        assert not worker.is_running()


def test_sigterm_cancels_jobs_still_running_at_drain_timeout(
    markers: Path, running: list[subprocess.Popen[bytes]]
) -> None:
    drain_timeout = 1.0
    proc = _start(markers, seconds=600.0, backend="thread", drain_timeout=drain_timeout)
    running.append(proc)
    _started_jobs(markers, 2, proc)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = _finish(proc, within=drain_timeout + CLOSE_TIMEOUT + MARGIN)
    # Every submitted job has its outcome: the two cancelled ones count as failed.
    assert proc.returncode == 1, out + err
    assert time.monotonic() - signalled < drain_timeout + CLOSE_TIMEOUT + MARGIN
    assert _counts(out) == (0, 2, 2), out
    assert "2 pool_closed" in out
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("signum", "host_loop", "status"),
    [
        pytest.param(signal.SIGINT, "asyncio", 130, id="SIGINT-asyncio"),
        pytest.param(signal.SIGTERM, "trio", 143, id="SIGTERM-trio"),
    ],
)
def test_second_signal_cancels_running_jobs_and_exits_128_plus_it(
    signum: signal.Signals,
    host_loop: str,
    status: int,
    markers: Path,
    running: list[subprocess.Popen[bytes]],
) -> None:
    # The jobs would outlast the test and the drain would wait for them: only the
    # second signal can end the run in time.
    proc = _start(markers, seconds=600.0, host_loop=host_loop, drain_timeout=600.0)
    running.append(proc)
    workers = _started_jobs(markers, 2, proc).values()
    os.kill(proc.pid, signum)
    err = _wait_for_stderr(proc, f"{signum.name} {DRAINING}")
    signalled = time.monotonic()
    os.kill(proc.pid, signum)
    out, all_err = _finish(proc, within=CLOSE_TIMEOUT + MARGIN, err=err)
    assert proc.returncode == status, out + all_err
    assert time.monotonic() - signalled < CLOSE_TIMEOUT + MARGIN
    assert _counts(out) == (0, 2, 2), out
    assert "2 pool_closed" in out
    assert f"stopped  by {signum.name}: cancelled by a second signal" in out
    assert f"{signum.name} received again" in all_err
    assert "Traceback" not in all_err
    # The host killed its workers before it exited.
    assert not [pid for pid in workers if _alive(pid)]


def _alive(process: psutil.Process | int) -> bool:
    """Whether ``process`` still runs (a zombie nobody reaps yet does not)."""
    try:
        if isinstance(process, int):
            process = psutil.Process(process)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_leaves_no_worker_behind(
    markers: Path, running: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(markers, seconds=600.0)
    running.append(proc)
    workers = set(_started_jobs(markers, 2, proc).values())
    # Workers may be grandchildren (forked by the forkserver): everything under the
    # program must go, the forkserver included.
    family = psutil.Process(proc.pid).children(recursive=True)
    assert workers <= {process.pid for process in family}
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    try:
        _, alive = psutil.wait_procs(family, timeout=20.0)
        assert not alive, f"processes {[p.pid for p in alive]} outlived the program"
    finally:
        for process in family:
            if _alive(process):  # is_running() guards against a reused pid
                process.kill()
