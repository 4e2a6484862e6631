"""The thread backend at a real task limit: a thread is a task, counted by RLIMIT_NPROC
and by a cgroup's pids.max like a process. When none can be started, the job waiting
for an executor fails with an error that names the executor and the limit, nothing is
left half-started, and the same open pool serves jobs once the limit is lifted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
from thread_helpers import PATIENCE

from executors.testing._limits import limit_or_skip

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


# Run in a child interpreter, where the limit is lowered; argv[1] is the limit's mode,
# argv[2] the executors' loop, argv[3] the entrypoint. (A child also keeps asyncio's
# complaint about a loop that could not be made, printed when it is collected, out of
# the test process.)
_SCRIPT = textwrap.dedent(
    """
    import sys
    import threading

    import anyio

    from executors import AcquireError, PoolConfig, open_pool
    from executors.testing._limits import fork_refused, join, lowered

    MODE, LOOP, ENTRYPOINT = sys.argv[1], sys.argv[2], sys.argv[3]

    async def main():
        config = PoolConfig(
            backend="thread", entrypoint=ENTRYPOINT, idle_executors=0,
            max_executors=1, acquire_attempts=2, spawn_backoff=0.01,
            spawn_backoff_max=0.05, drain_timeout=5.0,
            backend_options={"loop": LOOP},
        )
        async with open_pool(config) as pool:
            before = threading.active_count()
            with lowered(MODE):
                if MODE != "nofile" and not fork_refused():
                    print("SKIP: the task limit does not stop this user "
                          "(a privileged user: CAP_SYS_RESOURCE or CAP_SYS_ADMIN)")
                    return
                try:
                    await pool.run("refused")
                except AcquireError as exc:
                    print("ERROR:", exc)
                    print("CAUSE:", repr(exc.__cause__))
                else:
                    sys.exit("an executor started at the limit")
            print("THREADS:", threading.active_count() - before)
            print("RESULT:", await pool.run("served"))

    join(MODE)
    anyio.run(main)
    """
)


@pytest.fixture
def task_limit(tmp_path: Path) -> Iterator[str]:
    """How the child limits its tasks (see ``executors.testing._limits``)."""
    yield from limit_or_skip(tmp_path.name)


def _run_at(mode: str, loop: str, entrypoint: str = "executors.testing.jobs:echo") -> str:
    """What the child printed, running the pool at the limit ``mode``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode, loop, entrypoint],
        env=env,
        capture_output=True,
        timeout=PATIENCE * 2,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    if out.startswith("SKIP:"):
        pytest.skip(out.removeprefix("SKIP:").strip())
    # a failed start leaves nothing to close: no wait for close_timeout
    assert "did not close within close_timeout" not in done.stderr.decode()
    assert "THREADS: 0" in out, out
    assert "RESULT: served" in out, out
    return out


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_low_task_limit_fails_starts_clearly_and_the_pool_recovers(
    task_limit: str, loop: str
) -> None:
    out = _run_at(task_limit, loop)
    assert "ThreadStartError: cannot start the thread of executor pool1-" in out, out
    assert "can't start new thread (RLIMIT_NPROC = " in out, out
    if task_limit.startswith("cgroup:"):
        assert ", cgroup pids.max = " in out, out


@pytest.mark.parametrize("thread_loop", ["asyncio", "trio"])
def test_a_low_open_files_limit_fails_starts_clearly_and_the_pool_recovers(
    thread_loop: str,
) -> None:
    # The thread starts, but the event loop of an async entrypoint needs descriptors (a
    # selector, a wakeup socket pair): the start fails at once, naming the limit. (A
    # sync entrypoint's thread runs no loop, and starts.)
    out = _run_at("nofile", thread_loop, "executors.testing.jobs:aecho")
    assert f"cannot start the {thread_loop} event loop of executor pool1-" in out, out
    assert "the host reached its open-files limit (RLIMIT_NOFILE = " in out, out
