"""Hostile environments: real resource limits, an entrypoint that does not import in the
workers, a pool opened inside a worker. Each ends in an error that names the cause and
where it struck, and the same open pool serves jobs again once the cause is gone."""

from __future__ import annotations

import errno
import os
import resource
import sys
import textwrap
from typing import TYPE_CHECKING

import anyio
import process_import_gate
import pytest
from process_helpers import PATIENCE, config

from executors import AcquireError, EntrypointError, FailureReason, JobStatus, open_pool
from executors.testing._leaks import _open_fds
from executors.testing._limits import limit_or_skip
from executors_process import NestedPoolError, WorkerError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _lowest_free_fd() -> int:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


@pytest.fixture
def import_gate_closed() -> Iterator[str]:
    """While this holds, workers cannot import ``process_import_gate``."""
    with open(process_import_gate.FLAG, "w"):
        pass
    try:
        yield process_import_gate.FLAG
    finally:
        if os.path.exists(process_import_gate.FLAG):
            os.unlink(process_import_gate.FLAG)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("spare_fds", [0, 2])
async def test_a_low_open_files_limit_fails_spawns_clearly_and_the_pool_recovers(
    spare_fds: int,
) -> None:
    # spare_fds = 2: the first socketpair succeeds and the second fails; its two sockets
    # must be closed too.
    cfg = config(entrypoint="process_jobs:echo", idle_executors=0, acquire_attempts=2)
    async with open_pool(cfg) as pool:
        before = _open_fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Every free descriptor number is >= the new limit: the next socket fails (EMFILE).
        # Only the soft limit of this process, and only until the finally.
        limit = _lowest_free_fd() + spare_fds
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
                await pool.run("refused")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # Checked before the next await: no spawn can run in between.
        assert _open_fds() == before, "a failed spawn left a descriptor open"
        stats = pool.statistics()
        assert stats.spawn_failures >= 2
        with anyio.fail_after(PATIENCE):
            assert await pool.run("served") == "served"
        assert pool.statistics().consecutive_spawn_failures == 0
    message = str(info.value)
    assert "Too many open files" in message
    assert f"RLIMIT_NOFILE = {limit}" in message
    cause = info.value.__cause__
    assert isinstance(cause, WorkerError)
    assert "cannot start worker" in str(cause)
    assert isinstance(cause.__cause__, OSError)
    assert cause.__cause__.errno == errno.EMFILE


# Run in a child interpreter: a process limit counts more than this test's processes
# (RLIMIT_NPROC every process of the user, a cgroup's pids.max every task in it), so it
# is lowered only there, never in the test process. argv[1] is the limit's mode.
_NPROC_SCRIPT = textwrap.dedent(
    """
    import sys

    import anyio

    from executors import AcquireError, PoolConfig, open_pool
    from executors.testing._limits import fork_refused, join, lowered

    MODE, START = sys.argv[1], sys.argv[2]

    async def main():
        config = PoolConfig(
            backend="process", entrypoint="process_jobs:echo", idle_executors=0,
            max_executors=1, acquire_attempts=2, spawn_backoff=0.01,
            spawn_backoff_max=0.05, drain_timeout=5.0, max_jobs_per_executor=1,
            backend_options={"start_method": START},
        )
        async with open_pool(config) as pool:
            # The fork server (if any) starts with the first worker, before the limit:
            # its own fork of the next worker is what fails.
            print("WARM:", await pool.run("warm"))
            # Its worker is recycled: gone before the limit counts what runs.
            await pool.wait_until(lambda s: s.idle + s.busy + s.closing == 0)
            with lowered(MODE):
                if not fork_refused():
                    print("SKIP: RLIMIT_NPROC = 0 does not stop this user's forks "
                          "(a privileged user: CAP_SYS_RESOURCE or CAP_SYS_ADMIN)")
                    return
                try:
                    await pool.run("refused")
                except AcquireError as exc:
                    print("ERROR:", exc)
                    print("CAUSE:", repr(exc.__cause__))
                else:
                    sys.exit("a spawn succeeded at the process limit")
            print("RESULT:", await pool.run("served"))

    join(MODE)
    anyio.run(main)
    """
)


@pytest.fixture
def process_limit(tmp_path: Path) -> Iterator[str]:
    """How the child limits its processes (see ``executors.testing._limits``)."""
    yield from limit_or_skip(tmp_path.name)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
async def test_a_low_process_limit_fails_spawns_clearly_and_the_pool_recovers(
    process_limit: str, start_method: str
) -> None:
    if start_method == "forkserver" and process_limit == "rlimit":
        pytest.skip("RLIMIT_NPROC is per process: the host's does not bind its fork server")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONDONTWRITEBYTECODE": "1"}
    with anyio.fail_after(PATIENCE * 2):
        done = await anyio.run_process(
            [sys.executable, "-c", _NPROC_SCRIPT, process_limit, start_method],
            env=env,
            check=False,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    if out.startswith("SKIP:"):
        pytest.skip(out.removeprefix("SKIP:").strip())
    assert "Resource temporarily unavailable" in out, out
    if process_limit == "rlimit":
        assert "RLIMIT_NPROC = 0" in out, out
    else:
        assert "cgroup pids.max = " in out, out
    assert "RESULT: served" in out, out


async def test_an_entrypoint_that_does_not_import_in_workers_fails_clearly_then_recovers(
    import_gate_closed: str,
) -> None:
    cfg = config(entrypoint="process_import_gate:echo", idle_executors=0, acquire_attempts=2)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run("refused")
        os.unlink(import_gate_closed)
        with anyio.fail_after(PATIENCE):
            assert await pool.run("served") == "served"
    message = str(info.value)
    assert "EntrypointError: worker " in message
    assert "entrypoint 'process_import_gate:echo'" in message
    assert "cannot import module 'process_import_gate'" in message
    assert "refuses to load" in message
    assert info.value.outcome.reason is FailureReason.ACQUIRE_FAILED
    assert isinstance(info.value.__cause__, EntrypointError)
    notes = "\n".join(getattr(info.value.__cause__, "__notes__", []))
    assert "raised in worker " in notes
    assert "remote traceback" in notes


async def test_a_process_pool_opened_inside_a_worker_is_refused_and_the_pool_serves_on() -> None:
    async with open_pool(config(entrypoint="process_jobs:open_nested_pool")) as pool:
        with anyio.fail_after(PATIENCE):
            refused = await (await pool.submit("process")).outcome()
            allowed = await (await pool.submit("thread")).outcome()
    assert refused.status is JobStatus.FAILED
    assert refused.reason is FailureReason.RAISED
    assert refused.error is not None
    assert refused.error.type_name == "executors_process._backend.NestedPoolError"
    assert isinstance(refused.error.exception, NestedPoolError)
    assert "open_pool() called inside worker " in refused.error.message
    assert "nested process pools are refused" in refused.error.message
    # A thread pool inside a worker stays in that process: it is allowed.
    assert allowed.ok, allowed
    assert allowed.value == "inner"


_UNGUARDED_SCRIPT = """
import sys

import anyio

from executors import JobFailed, open_pool


class Point:
    pass


async def main():
    async with open_pool(
        backend="process", entrypoint="process_jobs:echo", idle_executors=1,
        max_executors=1, acquire_attempts=1, initialize_timeout=10,
        backend_options={"start_method": sys.argv[1]},
    ) as pool:
        print("RESULT", await pool.run(1))
        try:
            await pool.run(Point())  # the worker needs the main module for this one
        except JobFailed as exc:
            print("FAILED", exc)
        print("RESULT", await pool.run(2))


anyio.run(main)  # no `if __name__ == "__main__":`
"""


async def _run_unguarded(tmp_path: Path, start_method: str) -> tuple[int, str, str]:
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with anyio.fail_after(PATIENCE * 3):
        done = await anyio.run_process(
            [sys.executable, str(script), start_method], env=env, check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_script_that_opens_its_pool_unguarded_fails_clearly_instead_of_looping(
    tmp_path: Path,
) -> None:
    # A spawned worker runs the main module again as it starts: without the guard, each
    # would open a pool of its own. It is refused there with advice, and the program ends.
    returncode, out, err = await _run_unguarded(tmp_path, "spawn")
    assert returncode == 1, err
    assert "RESULT" not in out
    assert "NestedPoolError: open_pool() called while a new worker process imports" in err
    assert "if __name__ == '__main__':" in err
    assert "AcquireError: no executor could be started" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forkserver is Linux's")
async def test_an_unguarded_script_fails_only_the_jobs_that_make_a_forked_worker_run_it(
    tmp_path: Path,
) -> None:
    # A forked worker runs the main module only for a job that needs a name from it: that
    # job fails with the same advice, and the worker serves on.
    returncode, out, err = await _run_unguarded(tmp_path, "forkserver")
    assert returncode == 0, err
    result, failed, result_again = out.splitlines()
    assert (result, result_again) == ("RESULT 1", "RESULT 2")
    assert failed.startswith("FAILED "), out
    assert "the payload of job pool1-job-2 cannot be unpickled in the worker" in failed
    assert "NestedPoolError: open_pool() called while a new worker process imports" in failed
    assert "if __name__ == '__main__':" in failed
