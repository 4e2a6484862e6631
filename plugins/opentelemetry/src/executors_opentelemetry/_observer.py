from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from executors import JobStatus, hookimpl

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span

    from executors import Job, JobOutcome, PoolStatistics

#: the instrumentation scope's name
SCOPE = "executors"
#: the executor counts of PoolStatistics, by the state attribute they take
_STATES = ("idle", "busy", "starting", "closing")


class OpenTelemetryObserver:
    """Traces and measures the pools it observes.

    **Spans.** One span a job, ``executors.job``, from the start of its first run to its
    outcome; a retried launch adds an event ``executors.retry`` to it. Attributes:
    ``executors.pool``, ``executors.job_id``, ``executors.executor_id``,
    ``executors.attempt``, then ``executors.status`` and ``executors.reason``; a job
    that did not succeed has status ERROR, with its error's message. A job that ends
    before it ever started (cancelled, refused) gets a span of its own at its end.

    **Metrics**, each with an ``executors.pool`` attribute:

    - ``executors.jobs`` (counter): jobs that ended, with ``executors.status`` and
      ``executors.reason``;
    - ``executors.job.run_time``, ``executors.job.queue_wait`` (histograms, seconds);
    - ``executors.executors.started``, ``executors.executors.closed`` (counters; closed
      with ``executors.reason``);
    - ``executors.executors`` (gauge, with ``executors.state``) and ``executors.jobs.waiting``
      (gauge): the pool's statistics as last reported (every ``ping_interval``).

    ``tracer_provider`` and ``meter_provider`` default to the global ones.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self._jobs = meter.create_counter(
            "executors.jobs", unit="{job}", description="Jobs that ended"
        )
        self._run_time = meter.create_histogram(
            "executors.job.run_time", unit="s", description="Seconds each job's last run took"
        )
        self._queue_wait = meter.create_histogram(
            "executors.job.queue_wait", unit="s", description="Seconds each job waited for it"
        )
        self._started = meter.create_counter(
            "executors.executors.started",
            unit="{executor}",
            description="Executors that became ready",
        )
        self._closed = meter.create_counter(
            "executors.executors.closed", unit="{executor}", description="Executors that are gone"
        )
        meter.create_observable_gauge(
            "executors.executors", [self._executor_counts], unit="{executor}",
            description="Executors, by state",
        )  # fmt: skip
        meter.create_observable_gauge(
            "executors.jobs.waiting", [self._waiting], unit="{job}",
            description="Accepted jobs waiting for an executor",
        )  # fmt: skip
        #: the span of each job that started and has no outcome yet, by pool and job id
        self._spans: dict[tuple[str, str], Span] = {}
        #: each pool's last statistics, for the gauges
        self._statistics: dict[str, PoolStatistics] = {}

    @hookimpl
    def executors_job_started(
        self, pool_name: str, job: Job, executor_id: str, attempt: int
    ) -> None:
        span = self._spans.get((pool_name, job.id))
        if span is None:
            span = self._spans[pool_name, job.id] = self._tracer.start_span(
                "executors.job",
                kind=trace.SpanKind.INTERNAL,
                attributes={"executors.pool": pool_name, "executors.job_id": job.id},
            )
        else:
            span.add_event("executors.retry", {"executors.attempt": attempt})
        span.set_attribute("executors.executor_id", executor_id)
        span.set_attribute("executors.attempt", attempt)

    @hookimpl
    def executors_job_finished(self, pool_name: str, job: Job, outcome: JobOutcome) -> None:
        reason = outcome.reason.value if outcome.reason is not None else ""
        attributes = {
            "executors.pool": pool_name,
            "executors.status": outcome.status.value,
            "executors.reason": reason,
        }
        self._jobs.add(1, attributes)
        started, finished = outcome.started_at, outcome.finished_at
        if started is not None and finished is not None:
            self._run_time.record(finished - started, {"executors.pool": pool_name})
            if outcome.submitted_at is not None:
                wait = started - outcome.submitted_at
                self._queue_wait.record(wait, {"executors.pool": pool_name})
        span = self._spans.pop((pool_name, job.id), None)
        if span is None:  # it never started: a span of its own, at its end
            span = self._tracer.start_span(
                "executors.job",
                attributes={"executors.pool": pool_name, "executors.job_id": job.id},
                start_time=time.time_ns(),
            )
        span.set_attribute("executors.status", outcome.status.value)
        span.set_attribute("executors.reason", reason)
        if outcome.status is not JobStatus.SUCCEEDED:
            message = str(outcome.error) if outcome.error is not None else reason
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()

    @hookimpl
    def executors_executor_ready(self, pool_name: str, executor_id: str) -> None:
        self._started.add(1, {"executors.pool": pool_name})

    @hookimpl
    def executors_executor_closed(self, pool_name: str, executor_id: str, reason: str) -> None:
        self._closed.add(1, {"executors.pool": pool_name, "executors.reason": reason})

    @hookimpl
    def executors_pool_statistics(self, pool_name: str, statistics: PoolStatistics) -> None:
        self._statistics[pool_name] = statistics

    def _executor_counts(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for pool, stats in self._statistics.items():
            for state in _STATES:
                attributes = {"executors.pool": pool, "executors.state": state}
                yield Observation(getattr(stats, state), attributes)

    def _waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for pool, stats in self._statistics.items():
            yield Observation(stats.waiting, {"executors.pool": pool})
