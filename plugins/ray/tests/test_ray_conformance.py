"""The conformance suite on the ray backend, as a backend author runs it. ``make test``
runs the quick profile; ``make test-ray`` the ci one (``--executors-profile ci``)."""

from __future__ import annotations

from executors.testing.conformance import BackendConformance


class TestRayConformance(BackendConformance):
    backend = "ray"
