"""Entrypoints and setups for the process backend tests (imported inside workers).

Workers find this module because ``multiprocessing`` hands them the host's ``sys.path``,
where pytest put this directory. Exceptions and payload classes defined here unpickle on
both sides for the same reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext

logger = logging.getLogger("process_jobs")

# Per worker process: how often the setup ran in it, and memory a job chose to keep.
SETUP_CALLS = 0
_KEPT: list[bytes] = []


class SetupFailed(Exception):
    """What ``broken_setup`` raises: a custom exception that pickles."""


class JobBoom(Exception):
    """What ``raise_custom`` raises."""


class HoldsALock(Exception):
    """An exception that does not pickle: it carries a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class NeedsTwoArguments(Exception):
    """An exception that pickles but does not unpickle: ``__init__`` wants two arguments
    and ``args`` holds one."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


@dataclasses.dataclass(frozen=True)
class Hold:
    """Payload of :func:`hold`: keep ``allocate_mb`` MiB (pages touched), write the
    worker's pid to ``pid_file``, then wait for ``release_file``, which the tests never
    create: the job runs until something stops it from outside."""

    pid_file: str
    release_file: str
    allocate_mb: int = 0
    ignore_sigterm: bool = False


# -- entrypoints ---------------------------------------------------------------------------


def echo(ctx: JobContext) -> object:
    return ctx.payload


def pid(ctx: JobContext) -> int:
    return os.getpid()


def surroundings(ctx: JobContext) -> dict[str, object]:
    """What a worker got of its host: argv, working directory, path, name."""
    import multiprocessing

    return {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "path": sys.path,
        "name": multiprocessing.current_process().name,
    }


def pid_and_state(ctx: JobContext) -> tuple[int, object]:
    return os.getpid(), ctx.state


async def apid_and_state(ctx: JobContext) -> tuple[int, object]:
    await asyncio.sleep(0)
    return os.getpid(), ctx.state


def hold(ctx: JobContext) -> int:
    """Follow a :class:`Hold` payload; return the pid once released."""
    spec: Hold = ctx.payload
    if spec.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    data = b"\x01" * (spec.allocate_mb << 20)  # written, so every page is resident
    _write_atomically(spec.pid_file, str(os.getpid()))
    while not os.path.exists(spec.release_file):
        time.sleep(0.01)
    del data
    return os.getpid()


def exit_with(ctx: JobContext) -> int:
    """End the worker with exit code ``payload`` (``None``: return the pid)."""
    if ctx.payload is not None:
        os._exit(ctx.payload)
    return os.getpid()


def stop_own_process(ctx: JobContext) -> int:
    """SIGSTOP the whole worker, so no thread of it answers pings any more
    (``payload`` false: return the pid)."""
    if ctx.payload:
        os.kill(os.getpid(), signal.SIGSTOP)
    return os.getpid()


def child_signal_actions(ctx: JobContext) -> list[str]:
    """How a program the job runs finds SIGINT and SIGTERM: 'ignored' if the worker's
    way of ignoring them were inherited, else 'default'."""
    probe = (
        "import signal\n"
        "for signum in (signal.SIGINT, signal.SIGTERM):\n"
        "    action = signal.getsignal(signum)\n"
        "    print('ignored' if action == signal.SIG_IGN else 'default')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return out.split()


def raise_custom(ctx: JobContext) -> None:
    raise JobBoom(f"boom: {ctx.payload}")


def raise_unpicklable(ctx: JobContext) -> None:
    raise HoldsALock("this exception holds a lock")


def raise_not_unpicklable(ctx: JobContext) -> None:
    raise NeedsTwoArguments("one", "two")


def odd_result(ctx: JobContext) -> object:
    """Return what ``payload`` names: "lock" (does not pickle), "needs two" (pickles,
    does not unpickle); anything else: the pid."""
    if ctx.payload == "lock":
        return threading.Lock()
    if ctx.payload == "needs two":
        return NeedsTwoArguments("one", "two")
    return os.getpid()


def log_warning(ctx: JobContext) -> str:
    logger.warning("hello from the worker: %s", ctx.payload)
    return ctx.job_id


def log_info(ctx: JobContext) -> str:
    logger.info("info from the worker: %s", ctx.payload)
    return ctx.job_id


def keep_memory(ctx: JobContext) -> int:
    """Keep ``payload`` MiB alive in the worker after the job returns; return the pid."""
    _KEPT.append(b"\x01" * (int(ctx.payload) << 20))
    return os.getpid()


_FAULTS = [0]


def faults_since_last_job(ctx: JobContext) -> int:
    """The worker's minor page faults since the last job of this kind read them (the
    payload's receipt among them)."""
    now = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    since, _FAULTS[0] = now - _FAULTS[0], now
    return since


def send_buffers(ctx: JobContext) -> list[int]:
    """The send buffer of each Unix stream socket the worker has open (its job and
    control sockets)."""
    import socket

    sizes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket (or the directory's own descriptor, closed by now)
        with sock:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
                sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    return sizes


# -- setups --------------------------------------------------------------------------------


def counting_setup() -> dict[str, int]:
    global SETUP_CALLS
    SETUP_CALLS += 1
    return {"pid": os.getpid(), "calls": SETUP_CALLS}


def broken_setup() -> None:
    raise SetupFailed("model weights not found")


def hanging_setup() -> None:
    threading.Event().wait()


def _write_atomically(path: str, text: str) -> None:
    # The test polls for the file: it must never see it half written.
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        file.write(text)
    os.replace(partial, path)


async def open_nested_pool(ctx: JobContext) -> object:
    """Opens a pool of ``ctx.payload`` (a backend name) inside the worker, runs a job."""
    from executors import PoolConfig, open_pool

    config = PoolConfig(backend=str(ctx.payload), entrypoint="process_jobs:echo")
    async with open_pool(config) as pool:
        return await pool.run("inner")
