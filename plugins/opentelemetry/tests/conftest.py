from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from executors.testing import no_leaks

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    with no_leaks():
        yield
