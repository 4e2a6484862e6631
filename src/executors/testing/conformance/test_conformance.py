"""The conformance suite against the backends named by ``--executors-backend``:

pytest --pyargs executors.testing.conformance --executors-backend NAME
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import pytest

from executors.testing.conformance import BackendConformance

if TYPE_CHECKING:
    from collections.abc import Mapping

    from executors import PoolConfig


class TestConformance(BackendConformance):
    #: the backend's options, from ``executors check`` (see ``executors_backend_options``)
    backend_options: Mapping[str, object] = types.MappingProxyType({})

    @pytest.fixture
    def conformance_backend(self, executors_backend: str) -> str:
        return executors_backend

    @pytest.fixture(autouse=True)
    def _backend_options(self, executors_backend_options: Mapping[str, object]) -> None:
        self.backend_options = executors_backend_options

    def config(self, **overrides: Any) -> PoolConfig:
        if not self.backend_options:
            return super().config(**overrides)
        return super().config(**{"backend_options": self.backend_options, **overrides})
