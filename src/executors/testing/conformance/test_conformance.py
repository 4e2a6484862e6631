"""The conformance suite against the backends named by ``--executors-backend``:

pytest --pyargs executors.testing.conformance --executors-backend NAME
"""

from __future__ import annotations

import pytest

from executors.testing.conformance import BackendConformance


class TestConformance(BackendConformance):
    @pytest.fixture
    def conformance_backend(self, executors_backend: str) -> str:
        return executors_backend
