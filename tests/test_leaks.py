"""executors.testing.no_leaks and the helper processes a backend declares
(executors.backend.register_helper_process): a fork server that serves every pool is not
left behind by the test that started it; once forgotten, it is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from executors.backend import forget_helper_process, register_helper_process
from executors.testing import no_leaks


def _helper(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A child that waits on its stdin: the host keeps a descriptor that reaches it."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    started.append(process)
    assert process.stdin is not None
    register_helper_process(process.pid, [process.stdin.fileno()])
    return process


def _end(started: list[subprocess.Popen[bytes]]) -> None:
    for process in started:
        forget_helper_process(process.pid)
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=20)


def test_a_declared_helper_process_is_not_left_behind() -> None:
    started: list[subprocess.Popen[bytes]] = []
    try:
        with no_leaks():
            _helper(started)
    finally:
        _end(started)


def _leave_a_forgotten_helper(started: list[subprocess.Popen[bytes]]) -> None:
    with no_leaks():
        forget_helper_process(_helper(started).pid)


def test_a_forgotten_helper_process_is_left_behind() -> None:
    started: list[subprocess.Popen[bytes]] = []
    try:
        with pytest.raises(AssertionError, match="child processes left behind"):
            _leave_a_forgotten_helper(started)
    finally:
        _end(started)
