"""Public testing kit: a scripted in-memory backend and simple job functions.

``SimulatedBackend`` runs jobs and spawns by script (succeed, fail, hang, crash, refuse,
take N seconds), so tests of code built on executors, and of the pool itself, are
deterministic and can run on virtual time (trio's ``MockClock``).
"""

from __future__ import annotations

import typing as _typing

from .._lazy import exports as _exports

# The names are imported on first use (PEP 562): a worker that imports a job of
# ``executors.testing.jobs`` does not import the simulated backend, anyio or psutil.
if _typing.TYPE_CHECKING:
    from ._leaks import no_leaks as no_leaks
    from ._simulated import Script as Script
    from ._simulated import SimulatedBackend as SimulatedBackend
    from ._simulated import SimulatedError as SimulatedError
    from ._simulated import SimulatedExecutor as SimulatedExecutor
    from .jobs import aecho as aecho
    from .jobs import echo as echo
    from .jobs import scripted as scripted

#: public name -> the private module that defines it
_HOMES = {
    "no_leaks": "._leaks",
    "Script": "._simulated",
    "SimulatedBackend": "._simulated",
    "SimulatedError": "._simulated",
    "SimulatedExecutor": "._simulated",
    "aecho": ".jobs",
    "echo": ".jobs",
    "scripted": ".jobs",
}

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

if not _typing.TYPE_CHECKING:  # hidden from type checkers, which then flag unknown names
    __getattr__, __dir__ = _exports(globals(), _HOMES)
