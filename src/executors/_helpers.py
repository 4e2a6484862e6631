"""Processes that serve every pool of an interpreter and live as long as it (a backend's
fork server, say): a backend declares them here, and ``executors.testing.no_leaks``
does not count them, nor the descriptors that reach them, as left behind by a test."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

_lock = threading.Lock()
# pid -> the host's descriptors that reach it
_helpers: dict[int, frozenset[int]] = {}


def register_helper_process(pid: int, fds: Iterable[int] = ()) -> None:
    """Declare process ``pid`` a helper of this interpreter, reached through ``fds``: it
    serves every pool and outlives each of them, so a leak check does not count it."""
    with _lock:
        _helpers[pid] = frozenset(fds)


def forget_helper_process(pid: int) -> None:
    """``pid`` is no longer a helper (it exited and its descriptors are closed)."""
    with _lock:
        _helpers.pop(pid, None)


def helper_processes() -> tuple[set[int], set[int]]:
    """The pids of the declared helpers, and the descriptors that reach them."""
    with _lock:
        return set(_helpers), {fd for fds in _helpers.values() for fd in fds}
