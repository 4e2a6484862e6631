from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from executors.testing import no_leaks

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs under an asyncio host and a trio host."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_leaked_threads_or_fds() -> Iterator[None]:
    """Invariant 10 for every test: no thread the test started outlives it. A test that
    abandons a thread releases its job and joins the thread before it ends."""
    with no_leaks():
        yield
