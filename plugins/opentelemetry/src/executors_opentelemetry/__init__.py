"""OpenTelemetry for executors pools: a span per job, metrics per pool.

An observer: pass it to the pools it should trace, ``open_pool(...,
observers=[OpenTelemetryObserver()])``. It uses the OpenTelemetry API only: the
application's SDK (its tracer and meter providers, and their exporters) decides where
spans and metrics go. It is never loaded on its own.
"""

from __future__ import annotations

from ._observer import OpenTelemetryObserver

__all__ = ["OpenTelemetryObserver"]
