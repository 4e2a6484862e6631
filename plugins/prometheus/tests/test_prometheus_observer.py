"""The observer's metrics, scraped from a real prometheus_client registry (the text a
Prometheus server reads, parsed back), after pools of the simulated backend ran
scripted jobs in virtual time: the seconds are exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executors import PoolConfig, Registry, hookimpl, open_pool
from executors.testing import Script, SimulatedBackend
from executors_prometheus import PrometheusObserver

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from executors import PoolStatistics


def run_virtual(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def config(**overrides: Any) -> PoolConfig:
    settings: dict[str, Any] = {
        "backend": "simulated",
        "entrypoint": "executors.testing:echo",
        "idle_executors": 1,
        "max_executors": 1,
        "ping_interval": 1.0,
    }
    return PoolConfig(**(settings | overrides))


def registry_with(backend: SimulatedBackend) -> Registry:
    registry = Registry.empty()
    registry.add_backend(backend)
    return registry


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the registry's exposition text: (name, labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


class StatisticsSeen:
    """Sets ``seen`` once the pool's statistics hook has been called (after the
    Prometheus observer's, registered before it)."""

    def __init__(self) -> None:
        self.seen = anyio.Event()

    @hookimpl
    def executors_pool_statistics(self, pool_name: str, statistics: PoolStatistics) -> None:
        self.seen.set()


def test_jobs_are_counted_by_outcome_with_their_run_and_wait_seconds() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)

    async def main() -> None:
        backend = SimulatedBackend()
        async with open_pool(
            config(), registry=registry_with(backend), observers=[observer], name="scored"
        ) as pool:
            await pool.wait_until(lambda s: s.idle == 1)
            # One executor: each job waits for the one before it.
            scripts = [
                Script.succeed(seconds=1.0),
                Script.fail("bad row"),
                Script.succeed(seconds=2.0),
            ]
            handles = [await pool.submit(script) for script in scripts]
            for handle in handles:
                await handle.outcome()

    run_virtual(main)
    samples = scrape(registry)
    assert value(samples, "executors_jobs_total", pool="scored", status="succeeded", reason="") == 2
    assert (
        value(samples, "executors_jobs_total", pool="scored", status="failed", reason="raised") == 1
    )
    assert value(samples, "executors_job_run_seconds_count", pool="scored") == 3
    assert value(samples, "executors_job_run_seconds_sum", pool="scored") == pytest.approx(3.0)
    # the run of 2 s falls in the 5 s bucket, not the 1 s one
    assert value(samples, "executors_job_run_seconds_bucket", pool="scored", le="1.0") == 2
    assert value(samples, "executors_job_run_seconds_bucket", pool="scored", le="5.0") == 3
    # waits: 0 s, then 1 s for each of the two after the first job
    assert value(samples, "executors_job_queue_wait_seconds_sum", pool="scored") == pytest.approx(
        2.0
    )


def test_executors_and_the_pools_statistics_are_exported() -> None:
    registry = CollectorRegistry()
    observer, statistics = PrometheusObserver(registry), StatisticsSeen()

    async def main() -> None:
        backend = SimulatedBackend(spawns=[Script.fail("no GPU")])
        async with open_pool(
            config(),
            registry=registry_with(backend),
            observers=[observer, statistics],
            name="gpu",
        ) as pool:
            await pool.wait_until(lambda s: s.idle == 1)
            with anyio.fail_after(5.0):  # virtual seconds: one ping_interval is 1
                await statistics.seen.wait()

    run_virtual(main)
    samples = scrape(registry)
    assert value(samples, "executors_executors_started_total", pool="gpu") == 1
    assert value(samples, "executors_executors", pool="gpu", state="idle") == 1
    assert value(samples, "executors_executors", pool="gpu", state="busy") == 0
    assert value(samples, "executors_pool_healthy", pool="gpu") == 1
    assert value(samples, "executors_jobs_waiting", pool="gpu") == 0
    # the executor that failed to start, and the one the drain closed as surplus
    closed = {
        dict(labels)["reason"]: count
        for (name, labels), count in samples.items()
        if name == "executors_executors_closed_total"
    }
    assert closed == {"spawn_failed": 1, "idle_surplus": 1}


def test_one_observer_keeps_the_pools_apart() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, namespace="app")

    async def main() -> None:
        for name, jobs in (("left", 2), ("right", 3)):
            backend = SimulatedBackend()
            async with open_pool(
                config(), registry=registry_with(backend), observers=[observer], name=name
            ) as pool:
                for _ in range(jobs):
                    await pool.run(Script.succeed())

    run_virtual(main)
    samples = scrape(registry)
    assert value(samples, "app_jobs_total", pool="left", status="succeeded", reason="") == 2
    assert value(samples, "app_jobs_total", pool="right", status="succeeded", reason="") == 3
