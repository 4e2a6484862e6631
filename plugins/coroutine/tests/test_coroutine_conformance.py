"""The conformance suite, run the way a backend author runs it: by subclassing."""

from __future__ import annotations

from executors.testing.conformance import BackendConformance


class TestCoroutineConformance(BackendConformance):
    backend = "coroutine"
