"""The conformance suite on this backend, run the way a backend author runs it: by
subclassing ``BackendConformance`` (``executors check oneshot`` runs the same rules)."""

from __future__ import annotations

from executors.testing.conformance import BackendConformance


class TestOneshotConformance(BackendConformance):
    backend = "oneshot"
