"""What the process backend tests share: a base config, and ways to wait for a worker's
pid and for processes to be gone without sleeping and hoping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import psutil
from process_jobs import Hold

from executors import PoolConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

#: generous bound on anything that should take a fraction of a second on a quiet machine
PATIENCE = 20.0
_POLL = 0.01


def config(**overrides: Any) -> PoolConfig:
    base: dict[str, Any] = {
        "backend": "process",
        "entrypoint": "process_jobs:hold",
        "idle_executors": 1,
        "max_executors": 1,
        "close_timeout": 2.0,
        "drain_timeout": 5.0,
        "spawn_backoff": 0.01,
        "spawn_backoff_max": 0.05,
    }
    base.update(overrides)
    return PoolConfig(**base)


def hold(directory: Path, name: str = "job", **options: Any) -> Hold:
    """A :class:`Hold` payload whose files live in ``directory``."""
    return Hold(str(directory / f"{name}.pid"), str(directory / f"{name}.release"), **options)


def release(payload: Hold) -> None:
    """Let jobs with this payload return at once (they still write their pid first)."""
    with open(payload.release_file, "w"):
        pass


async def until(condition: Callable[[], bool], within: float = PATIENCE) -> None:
    """Return once ``condition()`` holds; fail after ``within`` seconds.

    For what no event announces: a file written by a worker, the end of a process that
    is not the pool's. ``condition`` must be quick and non-blocking.
    """
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- another process changes it: no event to wait on
            await anyio.sleep(_POLL)


async def pid_of(payload: Hold) -> int:
    """The pid of the worker running a :func:`process_jobs.hold` job, once it holds."""
    await until(lambda: os.path.exists(payload.pid_file))
    return _read_pid(payload.pid_file)


def _read_pid(path: str) -> int:
    with open(path) as file:  # written whole (renamed into place), a few bytes
        return int(file.read())


def gone(pid: int) -> bool:
    """True when ``pid`` has ended (a zombie has ended: only its exit status is left)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_until_gone(pids: Iterable[int], within: float = PATIENCE) -> None:
    """Return once every process in ``pids`` has ended; fail after ``within`` seconds."""
    await until(lambda: all(gone(pid) for pid in pids), within)


def run_script(script: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Runs ``script`` in a fresh interpreter (its own fork server, with its own
    preloads) and returns the JSON it prints; fails with its stderr if it exits non-zero,
    or if it has not ended after 3 x PATIENCE seconds. A file, not ``-c``: workers
    import the main module by its path. ``env``: added to this process's environment."""
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
