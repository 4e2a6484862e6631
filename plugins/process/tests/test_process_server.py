"""The backend's fork server (Linux): it rides out the signals sent to a whole process
group, and when it dies, its workers die with it and the pool carries on with a new one."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest
from process_helpers import PATIENCE, config, run_script, until, wait_until_gone

from executors import open_pool
from executors_process import _server
from executors_process._server import SERVER

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's"),
]


def _caught(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (/proc's SigCgt mask)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)


def _workers(server: int) -> set[int]:
    return {child.pid for child in psutil.Process(server).children()}


async def test_the_fork_server_rides_out_sigint_and_sigterm_and_forks_on() -> None:
    cfg = config(entrypoint="process_jobs:pid", max_jobs_per_executor=1)
    async with open_pool(cfg) as pool:
        first = await pool.run(None)
        server = SERVER.pid
        assert server is not None
        assert psutil.Process(first).ppid() == server, "the worker was not forked by the server"
        assert _caught(server, signal.SIGINT)
        assert _caught(server, signal.SIGTERM)
        os.kill(server, signal.SIGINT)
        os.kill(server, signal.SIGTERM)
        # Each job recycles its worker: the next one is a new fork, from the same server.
        second = await pool.run(None)
    assert second != first
    assert SERVER.pid == server
    assert psutil.Process(server).status() != psutil.STATUS_ZOMBIE


async def test_a_killed_fork_server_takes_its_workers_and_the_pool_serves_on() -> None:
    cfg = config(entrypoint="process_jobs:pid", idle_executors=2, max_executors=2)
    async with open_pool(cfg) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        server = SERVER.pid
        assert server is not None
        workers = _workers(server)
        assert len(workers) == 2
        started = pool.statistics().executors_started
        os.kill(server, signal.SIGKILL)
        # Its workers die with it (the kernel kills them, as they asked): the pool sees
        # them go and starts two more, from a new server.
        await wait_until_gone(workers)
        await pool.wait_until(lambda s: s.executors_started >= started + 2 and s.idle == 2)
        assert SERVER.pid not in (None, server)
        assert await pool.run(None) in _workers(SERVER.pid)
    await until(lambda: not psutil.pid_exists(server), PATIENCE)


async def test_a_server_whose_line_broke_is_killed_and_reaped_before_another_starts() -> None:
    # A SIGKILLed server may not have exited yet when the host's next request finds its
    # line broken: the host must still kill it for sure and reap it, not leave a zombie
    # (or, here, a stopped server) behind for its whole life. And a server that does
    # not answer (stopped here; stuck in an import, say) never reports the exit of the
    # worker the first job retired: the host sees it go with its own watch, or the
    # pool (one executor at most) would wait for it forever.
    cfg = config(entrypoint="process_jobs:pid", idle_executors=0, max_jobs_per_executor=1)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            await pool.run(None)
            server = SERVER.pid
            assert server is not None
            os.kill(server, signal.SIGSTOP)  # alive, and answering nothing
            line = SERVER._line  # the line, broken on purpose
            assert line is not None
            line.shutdown(socket.SHUT_WR)
            # The next job needs a new worker: its request fails, and another server
            # forks it.
            worker = await pool.run(None)
        assert SERVER.pid not in (None, server)
        assert worker in _workers(SERVER.pid)
        assert not psutil.pid_exists(server), "the broken server was left behind"


def test_a_killed_server_not_dead_yet_is_reaped_later() -> None:
    # _discard waits a moment at most for a killed server to die; one still alive (here:
    # not killed at all) stays among those to reap, and is reaped once it has exited.
    pid = os.posix_spawn(
        sys.executable, [sys.executable, "-c", "import signal; signal.pause()"], os.environ
    )
    dying = {pid}
    try:
        _server._reap_dead(dying)
        assert dying == {pid}, "a live process was forgotten"
    finally:
        os.kill(pid, signal.SIGKILL)
    _server._reap_dead(dying, PATIENCE)
    assert not dying
    assert not psutil.pid_exists(pid)


async def test_each_worker_gets_the_hosts_argv_directory_and_path_as_they_are_at_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An argv far longer than one packet of the line: it goes in parts.
    long_argv = [sys.argv[0], *(f"--file=/data/{'x' * 60}/{i}.csv" for i in range(2000))]
    cfg = config(entrypoint="process_jobs:surroundings", max_jobs_per_executor=1)
    async with open_pool(cfg) as pool:
        first = await pool.run(None)
        monkeypatch.setattr(sys, "argv", long_argv)
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
        # Each job recycles its worker: the next one starts with the host as it is now.
        second = await pool.run(None)
    assert first["cwd"] != str(tmp_path)
    assert second["argv"] == long_argv
    assert second["cwd"] == str(tmp_path)
    assert second["path"][0] == str(tmp_path)
    assert str(second["name"]).startswith("executors-worker-")


@pytest.mark.parametrize("with_pidfd", [True, False], ids=["pidfd", "looked-for"])
def test_the_server_reports_a_workers_exit_code_and_closes_its_reply(with_pidfd: bool) -> None:
    # The server's reaping, in this process: a pidfd says when the worker has exited;
    # where the kernel has none, the server looks every _REAP_EVERY seconds.
    # A bare child (no Popen object, which would want to reap it itself).
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "raise SystemExit(3)"], os.environ)
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    poller = select.poll()
    exited = _server._pidfd(pid) if with_pidfd else None
    assert (exited is not None) == with_pidfd, "no pidfd from this kernel"
    workers = {pid: (theirs.detach(), exited)}
    exits = {} if exited is None else {exited: pid}
    if exited is not None:
        poller.register(exited, select.POLLIN)
    deadline = time.monotonic() + PATIENCE
    while pid in workers:
        assert time.monotonic() < deadline, f"the exit of {pid} was never reported"
        poller.poll(_server._REAP_EVERY * 1000)
        _server._reap([pid], workers, exits, poller)
    with ours:
        assert struct.unpack("i", ours.recv(16)) == (3,)
        assert ours.recv(16) == b"", "the reply was not closed"
    assert not exits


STUCK_HOST = textwrap.dedent(
    """
    import json, os, signal

    import anyio

    from executors import AcquireError, open_pool
    from executors_process._server import SERVER

    async def main():
        async with open_pool(
            backend="process",
            entrypoint="process_stuck_import:echo",
            idle_executors=0,
            initialize_timeout=0.5,
            acquire_attempts=2,
        ) as pool:
            try:
                await pool.run(None)
            except AcquireError as exc:
                print(json.dumps(str(exc)))
        # Stuck in the import, the server never reads that its host has gone: it
        # would outlive it (and hold this script's output open).
        os.kill(SERVER.pid, signal.SIGKILL)

    if __name__ == "__main__":
        anyio.run(main)
    """
)


def test_a_module_whose_import_hangs_the_server_fails_each_start_in_time(
    tmp_path: Path,
) -> None:
    # The server imports the pool's module before it forks: an import that never ends
    # holds every start there. Each start ends at initialize_timeout, and the pool
    # reports it; nothing hangs, neither the pool nor its close. In a host of its own
    # (a stuck server is of no use to later tests), bounded: run_script fails after
    # its timeout.
    script = tmp_path / "host.py"
    script.write_text(STUCK_HOST)
    message = run_script(script, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    assert "did not start within initialize_timeout (0.5s)" in message
