from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from executors import hookimpl

if TYPE_CHECKING:
    from executors import Job, JobOutcome, PoolStatistics

#: seconds: from a millisecond job to one of several minutes
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

#: the executor counts of PoolStatistics, by the state label they take
_STATES = ("idle", "busy", "starting", "closing")


class PrometheusObserver:
    """Records what the pools it observes do, in ``registry`` (default: the
    process-wide one that ``prometheus_client.start_http_server`` serves). Metrics, each
    with a ``pool`` label; their names start with ``namespace`` (``executors``):

    - ``executors_jobs_total{status, reason}``: jobs that ended, by their outcome (reason
      is empty for a success);
    - ``executors_job_run_seconds``: how long each job's last run took;
    - ``executors_job_queue_wait_seconds``: how long each job waited for that run;
    - ``executors_executors_started_total``, ``executors_executors_closed_total{reason}``;
    - ``executors_executors{state}``, ``executors_jobs_waiting``, ``executors_pool_healthy``
      (1 or 0): the pool's statistics, read every ``ping_interval``;
    - ``executors_pool_unhealthy_total``: times the pool's spawns kept failing.

    One observer may watch many pools. Create one per registry: its metrics are
    registered when it is made.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "executors"
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.jobs = Counter(
            "jobs", "Jobs that ended, by outcome.", ["pool", "status", "reason"],
            namespace=namespace, registry=registry,
        )  # fmt: skip
        self.run_seconds = Histogram(
            "job_run_seconds", "Seconds each job's last run took.", ["pool"],
            namespace=namespace, registry=registry, buckets=BUCKETS,
        )  # fmt: skip
        self.queue_wait_seconds = Histogram(
            "job_queue_wait_seconds", "Seconds each job waited, submission to its last run.",
            ["pool"], namespace=namespace, registry=registry, buckets=BUCKETS,
        )  # fmt: skip
        self.executors_started = Counter(
            "executors_started", "Executors that started and became ready.", ["pool"],
            namespace=namespace, registry=registry,
        )  # fmt: skip
        self.executors_closed = Counter(
            "executors_closed", "Executors that are gone, by why.", ["pool", "reason"],
            namespace=namespace, registry=registry,
        )  # fmt: skip
        self.executors = Gauge(
            "executors", "Executors, by state.", ["pool", "state"],
            namespace=namespace, registry=registry,
        )  # fmt: skip
        self.waiting = Gauge(
            "jobs_waiting", "Accepted jobs waiting for an executor.", ["pool"],
            namespace=namespace, registry=registry,
        )  # fmt: skip
        self.healthy = Gauge(
            "pool_healthy", "1 while the pool's spawns succeed, 0 once they keep failing.",
            ["pool"], namespace=namespace, registry=registry,
        )  # fmt: skip
        self.unhealthy = Counter(
            "pool_unhealthy", "Times the pool's spawns failed consecutive_failure_limit times.",
            ["pool"], namespace=namespace, registry=registry,
        )  # fmt: skip

    @hookimpl
    def executors_job_finished(self, pool_name: str, job: Job, outcome: JobOutcome) -> None:
        reason = outcome.reason.value if outcome.reason is not None else ""
        self.jobs.labels(pool_name, outcome.status.value, reason).inc()
        started, finished = outcome.started_at, outcome.finished_at
        if started is not None and finished is not None:
            self.run_seconds.labels(pool_name).observe(finished - started)
            if outcome.submitted_at is not None:
                self.queue_wait_seconds.labels(pool_name).observe(started - outcome.submitted_at)

    @hookimpl
    def executors_executor_ready(self, pool_name: str, executor_id: str) -> None:
        self.executors_started.labels(pool_name).inc()

    @hookimpl
    def executors_executor_closed(self, pool_name: str, executor_id: str, reason: str) -> None:
        self.executors_closed.labels(pool_name, reason).inc()

    @hookimpl
    def executors_pool_statistics(self, pool_name: str, statistics: PoolStatistics) -> None:
        for state in _STATES:
            self.executors.labels(pool_name, state).set(getattr(statistics, state))
        self.waiting.labels(pool_name).set(statistics.waiting)
        self.healthy.labels(pool_name).set(1 if statistics.healthy else 0)

    @hookimpl
    def executors_pool_unhealthy(
        self, pool_name: str, consecutive_failures: int, error: BaseException | None
    ) -> None:
        self.unhealthy.labels(pool_name).inc()
        self.healthy.labels(pool_name).set(0)
