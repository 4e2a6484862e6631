"""An abandoned thread never holds up interpreter exit: it is a daemon."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: a generous bound: the script itself takes a fraction of a second
EXIT_WITHIN = 20.0

SCRIPT = textwrap.dedent(
    """
    import threading
    import time

    import anyio

    from executors import open_pool


    def block_forever(ctx):
        time.sleep(3600)  # ignores cancellation: a thread cannot be interrupted


    async def main():
        async with open_pool(
            backend="thread",
            entrypoint=block_forever,
            idle_executors=1,
            max_executors=1,
            job_timeout=0.05,
            close_timeout=0.1,
        ) as pool:
            outcome = await (await pool.submit(None)).outcome()
        stuck = [t for t in threading.enumerate() if t.name.startswith("executors-thread-")]
        print(outcome.status.name, [(t.is_alive(), t.daemon) for t in stuck], flush=True)


    anyio.run(main, backend={backend!r})
    """
)


@pytest.mark.parametrize("host", ["asyncio", "trio"])
def test_the_interpreter_exits_promptly_with_an_abandoned_thread_blocked_forever(
    host: str,
) -> None:
    # subprocess.run raises TimeoutExpired (and kills the child) past EXIT_WITHIN
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(backend=host)],
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # the job timed out, and its thread was still blocked, alive and a daemon at exit
    assert done.stdout.strip() == "TIMED_OUT [(True, True)]", done.stderr
    assert "abandoned" in done.stderr  # the backend's warning, on the last-resort handler
