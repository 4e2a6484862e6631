"""Signals sent to a whole process group: the workers and the server they fork from ride
them out (the host decides what happens to running jobs), and nothing else is changed,
neither for the programs a job runs nor for other users of a shared forkserver.

The backend's own fork server (Linux) is tested in test_process_server.py; here,
``multiprocessing``'s forkserver, which the backend uses elsewhere, with the module the
backend preloads in it (``_forkserver``)."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
from process_helpers import config, run_script

from executors import open_pool

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_a_program_a_job_runs_starts_with_the_default_signal_actions() -> None:
    async with open_pool(config(entrypoint="process_jobs:child_signal_actions")) as pool:
        actions = await pool.run(None)
    assert actions == ["default", "default"]


FORKSERVER_PROBE = textwrap.dedent(
    """
    import json, multiprocessing, multiprocessing.forkserver, os, signal

    def report(conn):
        conn.send("default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "other")

    def run_child(ctx):
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=report, args=(writer,))
        child.start()
        writer.close()
        action = reader.recv()
        child.join()
        return action

    def caught(pid, signum):
        with open(f"/proc/{pid}/status") as status:
            line = next(l for l in status if l.startswith("SigCgt:"))
        return bool(int(line.split()[1], 16) >> (signum - 1) & 1)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["executors_process._forkserver"])
        first = run_child(ctx)
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        result = {"caught": caught(server, signal.SIGTERM), "first": first}
        os.kill(server, signal.SIGTERM)
        result["after_sigterm"] = run_child(ctx)
        result["same_server"] = multiprocessing.forkserver._forkserver._forkserver_pid == server
        print(json.dumps(result))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_forkserver_survives_sigterm_and_its_other_children_keep_the_default(
    tmp_path: Path,
) -> None:
    script = tmp_path / "forkserver_probe.py"
    script.write_text(FORKSERVER_PROBE)
    assert run_script(script) == {
        "caught": True,
        "first": "default",
        "after_sigterm": "default",
        "same_server": True,
    }
