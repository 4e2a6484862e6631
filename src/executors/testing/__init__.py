"""Public testing kit: a scripted in-memory backend and simple job functions.

``SimulatedBackend`` runs jobs and spawns by script (succeed, fail, hang, crash, refuse,
take N seconds), so tests of code built on executors, and of the pool itself, are
deterministic and can run on virtual time (trio's ``MockClock``).
"""

from __future__ import annotations

from ._leaks import no_leaks as no_leaks
from ._simulated import Script as Script
from ._simulated import SimulatedBackend as SimulatedBackend
from ._simulated import SimulatedError as SimulatedError
from ._simulated import SimulatedExecutor as SimulatedExecutor
from .jobs import aecho as aecho
from .jobs import echo as echo
from .jobs import scripted as scripted

__all__ = [
    "Script",
    "SimulatedBackend",
    "SimulatedError",
    "SimulatedExecutor",
    "aecho",
    "echo",
    "no_leaks",
    "scripted",
]
