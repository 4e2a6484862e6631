from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from executors.testing import no_leaks

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _no_leaked_children_or_threads() -> Iterator[None]:
    """Invariant 10 for every test: nothing the test started outlives it."""
    with no_leaks():
        yield
