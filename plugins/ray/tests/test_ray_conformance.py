"""The conformance suite on the ray backend, as a backend author runs it. ``make test``
runs the quick profile; ``make test-ray`` the ci one (``--executors-profile ci``). It
runs on both of the backend's paths: plain actor calls, and compiled graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.testing.conformance import BackendConformance

if TYPE_CHECKING:
    from executors import PoolConfig


class TestRayConformance(BackendConformance):
    backend = "ray"


class TestRayCompiledGraphsConformance(BackendConformance):
    """The jobs through each executor's compiled graph (``compiled_graphs = true``)."""

    backend = "ray"

    def config(self, **overrides: Any) -> PoolConfig:
        return super().config(backend_options={"compiled_graphs": True}, **overrides)
