"""The observer's spans and metrics, exported to the OpenTelemetry SDK's in-memory
exporter and reader, after pools of the simulated backend ran scripted jobs in virtual
time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from executors import PoolConfig, Registry, hookimpl, open_pool
from executors.testing import Script, SimulatedBackend
from executors_opentelemetry import OpenTelemetryObserver

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

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


class Exporters:
    """An SDK whose spans and metrics stay in memory, and the observer on it."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracing = TracerProvider()
        tracing.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.observer = OpenTelemetryObserver(tracing, MeterProvider(metric_readers=[self.reader]))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def attributes(item: Any) -> Mapping[str, Any]:
    """A span's or a data point's attributes (typed as possibly None)."""
    found = item.attributes
    assert found is not None
    return dict(found)


class StatisticsSeen:
    def __init__(self) -> None:
        self.seen = anyio.Event()

    @hookimpl
    def executors_pool_statistics(self, pool_name: str, statistics: PoolStatistics) -> None:
        self.seen.set()


def test_each_job_gets_one_span_with_its_outcome() -> None:
    sdk = Exporters()

    async def main() -> None:
        backend = SimulatedBackend()
        async with open_pool(
            config(launch_attempts=3, max_executors=2),
            registry=registry_with(backend),
            observers=[sdk.observer],
            name="traced",
        ) as pool:
            await pool.run(Script.succeed("ok", seconds=1.0))
            failed = await pool.submit(Script.fail("bad row"))
            await failed.outcome()
            refused = await pool.submit(Script.refuse())  # refused at every launch
            await refused.outcome()

    run_virtual(main)
    spans = {attributes(span)["executors.job_id"]: span for span in sdk.spans.get_finished_spans()}
    assert len(spans) == 3
    ok, bad, retried = (spans[f"traced-job-{i}"] for i in (1, 2, 3))
    assert ok.name == "executors.job"
    assert attributes(ok)["executors.pool"] == "traced"
    assert attributes(ok)["executors.status"] == "succeeded"
    assert attributes(ok)["executors.attempt"] == 1
    assert str(attributes(ok)["executors.executor_id"]).startswith("traced-")
    assert ok.status.status_code is StatusCode.UNSET
    assert attributes(bad)["executors.reason"] == "raised"
    assert bad.status.status_code is StatusCode.ERROR
    assert "bad row" in (bad.status.description or "")
    # one span for the job, with an event for each launch after the first
    assert [event.name for event in retried.events] == ["executors.retry", "executors.retry"]
    assert attributes(retried)["executors.attempt"] == 3
    assert retried.status.status_code is StatusCode.ERROR


def test_a_job_that_never_started_still_gets_its_span() -> None:
    sdk = Exporters()

    async def main() -> None:
        backend = SimulatedBackend()
        async with open_pool(
            config(), registry=registry_with(backend), observers=[sdk.observer], name="busy"
        ) as pool:
            running = await pool.submit(Script.succeed(seconds=10.0))
            waiting = await pool.submit(Script.succeed())
            await pool.wait_until(lambda s: s.busy == 1 and s.waiting == 1)
            waiting.cancel()
            await waiting.outcome()
            await running.outcome()

    run_virtual(main)
    spans = {attributes(span)["executors.job_id"]: span for span in sdk.spans.get_finished_spans()}
    assert attributes(spans["busy-job-2"])["executors.status"] == "cancelled"
    assert "executors.executor_id" not in attributes(spans["busy-job-2"])


def test_metrics_count_jobs_and_executors_and_report_the_pool() -> None:
    sdk, statistics = Exporters(), StatisticsSeen()

    async def main() -> None:
        backend = SimulatedBackend()
        async with open_pool(
            config(),
            registry=registry_with(backend),
            observers=[sdk.observer, statistics],
            name="measured",
        ) as pool:
            handles = [await pool.submit(Script.succeed(seconds=s)) for s in (1.0, 2.0)]
            for handle in handles:
                await handle.outcome()
            await (await pool.submit(Script.fail())).outcome()
            statistics.seen = anyio.Event()  # the next report, once every job has ended
            with anyio.fail_after(5.0):  # virtual seconds: one ping_interval is 1
                await statistics.seen.wait()
            executors = {
                attributes(point)["executors.state"]: point.value
                for point in sdk.points("executors.executors")
            }
            assert executors == {"idle": 1, "busy": 0, "starting": 0, "closing": 0}

    run_virtual(main)
    jobs = {
        (attributes(point)["executors.status"], attributes(point)["executors.reason"]): point.value
        for point in sdk.points("executors.jobs")
    }
    assert jobs == {("succeeded", ""): 2, ("failed", "raised"): 1}
    (run_time,) = sdk.points("executors.job.run_time")
    assert run_time.count == 3
    assert run_time.sum == pytest.approx(3.0)
    (queue_wait,) = sdk.points("executors.job.queue_wait")
    assert queue_wait.sum == pytest.approx(1.0)  # the second job waited for the first
    (started,) = sdk.points("executors.executors.started")
    assert started.value == 1
