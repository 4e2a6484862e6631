"""Prometheus metrics for executors pools.

An observer: pass it to the pools it should measure, ``open_pool(...,
observers=[PrometheusObserver()])``. It is never loaded on its own, so that a pool
without it pays nothing for metrics. Every metric has a ``pool`` label (the pool's
name); see :class:`PrometheusObserver` for the metrics.
"""

from __future__ import annotations

from ._observer import PrometheusObserver

__all__ = ["PrometheusObserver"]
