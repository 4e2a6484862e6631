"""The thread backend at a real task limit: a thread is a task, counted by RLIMIT_NPROC
and by a cgroup's pids.max like a process. When none can be started, the job waiting
for an executor fails with an error that names the executor and the limit, nothing is
left half-started, and the same open pool serves jobs once the limit is lifted."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import TYPE_CHECKING

import anyio
import pytest
from thread_helpers import PATIENCE

from executors.testing._limits import LimitUnavailable, task_limit_mode

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

# Run in a child interpreter, where the limit is lowered; argv[1] is the limit's mode,
# argv[2] the host loop.
_SCRIPT = textwrap.dedent(
    """
    import sys
    import threading

    import anyio

    from executors import AcquireError, PoolConfig, open_pool
    from executors.testing._limits import fork_refused, join, lowered

    MODE, LOOP = sys.argv[1], sys.argv[2]

    async def main():
        config = PoolConfig(
            backend="thread", entrypoint="executors.testing.jobs:echo", idle_executors=0,
            max_executors=1, acquire_attempts=2, spawn_backoff=0.01,
            spawn_backoff_max=0.05, drain_timeout=5.0,
        )
        async with open_pool(config) as pool:
            before = threading.active_count()
            with lowered(MODE):
                if not fork_refused():
                    print("SKIP: the task limit does not stop this user "
                          "(a privileged user: CAP_SYS_RESOURCE or CAP_SYS_ADMIN)")
                    return
                try:
                    await pool.run("refused")
                except AcquireError as exc:
                    print("ERROR:", exc)
                    print("CAUSE:", repr(exc.__cause__))
                else:
                    sys.exit("a thread started at the task limit")
            print("THREADS:", threading.active_count() - before)
            print("RESULT:", await pool.run("served"))

    join(MODE)
    anyio.run(main, backend=LOOP)
    """
)


@pytest.fixture
def task_limit(tmp_path: Path) -> Iterator[str]:
    try:
        with task_limit_mode(tmp_path.name) as mode:
            yield mode
    except LimitUnavailable as exc:
        pytest.skip(str(exc))


async def test_a_low_task_limit_fails_starts_clearly_and_the_pool_recovers(
    task_limit: str, anyio_backend: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with anyio.fail_after(PATIENCE * 2):
        done = await anyio.run_process(
            [sys.executable, "-c", _SCRIPT, task_limit, anyio_backend], env=env, check=False
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    if out.startswith("SKIP:"):
        pytest.skip(out.removeprefix("SKIP:").strip())
    assert "THREADS: 0" in out, out
    assert "ThreadStartError: cannot start the thread of executor pool1-" in out, out
    assert "can't start new thread (RLIMIT_NPROC = " in out, out
    if task_limit.startswith("cgroup:"):
        assert ", cgroup pids.max = " in out, out
    # a failed start leaves nothing to close: no wait for close_timeout
    assert "did not close within close_timeout" not in done.stderr.decode()
    assert "RESULT: served" in out, out
