from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import pytest

from executors.testing import no_leaks

if TYPE_CHECKING:
    from collections.abc import Iterator


# Before any worker or the fork server starts: the flag file of process_import_gate, one
# per test session.
os.environ.setdefault(
    "PROCESS_TESTS_IMPORT_GATE",
    os.path.join(tempfile.gettempdir(), f"executors-process-tests-import-gate-{os.getpid()}"),
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs under an asyncio host and a trio host."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_leaked_children_threads_or_fds() -> Iterator[None]:
    """After every test: no worker process (zombies included), thread or fd is left."""
    with no_leaks():
        yield
