"""Running a pool at a real task limit, for the hostile-environment tests of the
backends: ``RLIMIT_NPROC`` for an unprivileged user, and for root (whom
``RLIMIT_NPROC`` does not bind) a pids cgroup made for the test. Both count every task,
threads included, so a limit is only ever lowered in a child interpreter of the test.

The test side: ``with task_limit_mode(tag) as mode`` gives the mode to pass to the child
(and removes the cgroup after). The child side: ``join(mode)`` first, then ``with
lowered(mode):`` around what must fail, and ``fork_refused()`` to check the limit bites.
Mode ``"nofile"`` lowers the open-files limit instead (per process: no cgroup needed).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import TYPE_CHECKING

from executors._limits import own_pids_cgroup

if TYPE_CHECKING:
    from collections.abc import Iterator

#: seconds the cgroup may stay busy after the child exited (its last tasks leave it a
#: moment after their parent reaped them)
_LEAVE = 20.0


class LimitUnavailable(Exception):
    """No task limit can be applied here; the message says why (a test skips on it)."""


@contextlib.contextmanager
def task_limit_mode(tag: str) -> Iterator[str]:
    """``"rlimit"`` for an unprivileged user, else ``"cgroup:DIR"``: a new pids cgroup
    named after ``tag``, removed after the block. Raises :class:`LimitUnavailable`."""
    if os.geteuid() != 0:
        yield "rlimit"
        return
    parent = own_pids_cgroup()
    if parent is None:
        msg = "running as root, which RLIMIT_NPROC does not bind, and no pids cgroup"
        raise LimitUnavailable(msg)
    directory = os.path.join(parent, f"executors-test-{os.getpid()}-{tag}")
    try:
        os.mkdir(directory)
    except OSError as exc:
        msg = f"running as root, which RLIMIT_NPROC does not bind, and {exc}"
        raise LimitUnavailable(msg) from exc
    try:
        if not os.path.exists(os.path.join(directory, "pids.max")):
            msg = f"{directory} has no pids.max"
            raise LimitUnavailable(msg)
        yield f"cgroup:{directory}"
    finally:
        _remove(directory)


def limit_or_skip(tag: str) -> Iterator[str]:
    """For a pytest fixture (``yield from limit_or_skip(tmp_path.name)``): the mode of
    :func:`task_limit_mode`, or the test skipped with the reason none applies."""
    import pytest

    try:
        with task_limit_mode(tag) as mode:
            yield mode
    except LimitUnavailable as exc:
        pytest.skip(str(exc))


def _remove(directory: str) -> None:
    deadline = time.monotonic() + _LEAVE
    while True:
        try:
            os.rmdir(directory)
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


def _cgroup(mode: str) -> str:
    return mode.partition(":")[2]


def join(mode: str) -> None:
    """In the child, first thing: move this process into the test's cgroup, if any."""
    if directory := _cgroup(mode):
        _write(directory, "cgroup.procs", str(os.getpid()))


@contextlib.contextmanager
def lowered(mode: str) -> Iterator[None]:
    """In the child: no new task (process or thread) inside the block; with mode
    ``"nofile"``, no new file descriptor instead."""
    if mode == "nofile":
        with _no_new_descriptor():
            yield
        return
    directory = _cgroup(mode)
    if directory:
        with open(os.path.join(directory, "pids.current")) as file:
            _write(directory, "pids.max", file.read().strip())
        try:
            yield
        finally:
            _write(directory, "pids.max", "max")
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))


@contextlib.contextmanager
def _no_new_descriptor() -> Iterator[None]:
    import resource

    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # every free descriptor number is >= the limit: the next open fails (EMFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fork_refused() -> bool:
    """Whether a fork fails now (a privileged user may not be bound by the limit)."""
    try:
        pid = os.fork()
    except BlockingIOError:
        return True
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return False


def _write(directory: str, name: str, text: str) -> None:
    with open(os.path.join(directory, name), "w") as file:
        file.write(text)
