"""Soak test: many jobs, with injected faults, through one reused pool.

Run: ``.venv/bin/python benchmarks/soak.py --backend process --jobs 100000
[--fault-rate 0.05] [--faults raise,crash,...] [--json PATH]``.

A fixed number of lanes (``--in-flight``) each submit a job, wait for its outcome and
submit the next, so the run holds counters and the ids of the jobs in flight, never a
handle per job. A ``--fault-rate`` fraction of the jobs is a fault, drawn evenly from
the kinds the backend's capabilities allow:

- ``raise``: the job raises;
- ``crash``: the job ends its process (``os._exit``; backends that isolate crashes);
- ``hang``: the job waits until the pool's ``job_timeout`` ends it;
- ``cancel``: a short job cancelled after a random delay (waiting, running or done);
- ``memory``: the job holds more than ``memory_limit_mb`` until the supervisor kills
  its worker (backends that measure memory).

Besides, ``setup`` makes a ``--setup-failure-rate`` fraction of executor starts fail
(executors are recycled every ``--recycle-every`` jobs, so starts go on all run long;
a backend whose setup runs once per pool only retries it until it first succeeds), and
``sigkill`` SIGKILLs a random worker process of the pool every ``--kill-interval``
seconds (process-based backends).

The report: jobs submitted, outcomes by status and reason, jobs *lost* (no outcome),
*duplicated* (reported more than once to the observers), executors *leaked* (ready but
never closed), child processes, threads and descriptors left once the pool closed, the
pool's bookkeeping once no job is in flight, and the host's RSS sampled every
``--sample-every`` jobs, with its growth from the first ``--baseline-jobs`` jobs to the
end (and the count of objects the garbage collector tracks, which shows a leak of even
one object per job that RSS would blur). The exit status is 1 if anything was lost,
duplicated, leaked or left behind, or if RSS grew by more than ``--max-growth-mib`` or
the object count by more than ``--max-object-growth`` from the baseline to the end
(judged on runs of at least ``JUDGED_FROM`` jobs: shorter ones are too noisy).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import os
import platform
import random
import signal
import sys
import threading
import time
from collections.abc import Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import psutil
from soak_jobs import SETUP_FAILURE_RATE, Hold

from executors import FailureReason, PoolConfig, default_registry, hookimpl, open_pool
from executors.testing._leaks import interpreter_helpers
from executors.testing._program import Recorder
from executors.testing.jobs import Fault

if TYPE_CHECKING:
    from executors import Capabilities, Job, JobOutcome, Pool

JOB_KINDS = ("raise", "crash", "hang", "cancel", "memory")
OTHER_KINDS = ("setup", "sigkill")
#: runs shorter than this are not judged on memory growth
JUDGED_FROM = 10_000
MIB = 1024 * 1024


def applicable_kinds(capabilities: Capabilities) -> list[str]:
    """The fault kinds a backend with ``capabilities`` can take."""
    kinds = ["raise", "hang", "cancel", "setup"]
    if capabilities.isolates_crashes:
        kinds.append("crash")
    if capabilities.measures_memory:
        kinds.append("memory")
    if capabilities.isolates_crashes and not capabilities.remote:
        kinds.append("sigkill")
    return kinds


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--backend", default="process", help="the backend to soak (default: process)")
    add("--jobs", type=int, default=100_000, help="jobs to push through the pool")
    add("--fault-rate", type=float, default=0.05, help="fraction of jobs that are faults")
    add(
        "--faults",
        default="all",
        help=f"comma-separated fault kinds among {', '.join(JOB_KINDS + OTHER_KINDS)}, or "
        "'all' (those the backend allows); kinds the backend cannot take are an error",
    )
    add("--executors", type=int, default=4, help="idle_executors = max_executors")
    add("--in-flight", type=int, default=32, help="jobs submitted and not finished, at most")
    add("--job-timeout", type=float, default=0.1, help="the pool's job_timeout (ends hangs)")
    add("--memory-limit-mb", type=float, default=160.0, help="the pool's memory_limit_mb")
    add("--setup-failure-rate", type=float, default=0.1, help="fraction of setups that fail")
    add("--recycle-every", type=int, default=500, help="max_jobs_per_executor")
    add("--kill-interval", type=float, default=0.5, help="seconds between worker SIGKILLs")
    add("--sample-every", type=int, default=1000, help="jobs between RSS samples")
    add("--baseline-jobs", type=int, default=1000, help="jobs before the RSS baseline")
    add("--max-growth-mib", type=float, default=16.0, help="RSS growth that fails the run")
    add(
        "--max-object-growth",
        type=int,
        default=10_000,
        help="growth of the objects tracked by the garbage collector that fails the run",
    )
    add("--outcome-timeout", type=float, default=120.0, help="seconds before a job is lost")
    add("--seed", type=int, default=None, help="seed of the fault draws")
    add("--log-level", default="CRITICAL", help="log records shown on stderr (all are counted)")
    add("--json", type=Path, metavar="PATH", help="also write the report here")
    options = parser.parse_args(argv)
    capabilities = default_registry().backend(options.backend).capabilities
    allowed = applicable_kinds(capabilities)
    if options.faults == "all":
        kinds = allowed
    else:
        kinds = [kind for kind in options.faults.split(",") if kind]
        unknown = set(kinds) - set(JOB_KINDS + OTHER_KINDS)
        if unknown:
            parser.error(f"unknown fault kinds: {sorted(unknown)}")
        refused = set(kinds) - set(allowed)
        if refused:
            parser.error(f"backend {options.backend!r} cannot take faults {sorted(refused)}")
    options.kinds = [kind for kind in (*JOB_KINDS, *OTHER_KINDS) if kind in kinds]
    options.capabilities = capabilities
    return options


# -- observing the pool ------------------------------------------------------------------


def serial_of(job_id: str) -> int:
    return int(job_id.rpartition("-")[2])


@attrs.define(eq=False)
class SoakRecorder(Recorder):
    """The testing kit's :class:`Recorder` (executors ready and closed, overlapping
    runs), with the per-job counts in two byte arrays indexed by job serial: the base
    class keeps a counter entry and the outcome of every job, which would be the very
    per-job growth the soak looks for."""

    jobs: int = 0
    started_count: bytearray = attrs.field(init=False)
    finished_count: bytearray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.started_count = bytearray(self.jobs)
        self.finished_count = bytearray(self.jobs)

    @hookimpl
    def executors_job_started(self, job: Job, executor_id: str) -> None:
        serial = serial_of(job.id)
        self.started_count[serial] = min(255, self.started_count[serial] + 1)
        self.running_on.pop(self.running.pop(job.id, ""), None)
        if executor_id in self.running_on:
            self.overlaps.append(f"{job.id} on {executor_id} beside {self.running_on[executor_id]}")
        self.running_on[executor_id] = job.id
        self.running[job.id] = executor_id

    @hookimpl
    def executors_job_finished(self, job: Job, outcome: JobOutcome) -> None:
        serial = serial_of(job.id)
        self.finished_count[serial] = min(255, self.finished_count[serial] + 1)
        executor_id = self.running.pop(job.id, None)
        if executor_id is not None:
            self.running_on.pop(executor_id, None)


class CountingHandler(logging.Handler):
    """Counts log records by logger and level (a bounded table, not the records), and
    keeps the first few messages of level ERROR and above."""

    KEPT = 10

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1
        if record.levelno >= logging.ERROR and len(self.errors) < self.KEPT:
            self.errors.append(f"{record.name}: {record.getMessage()}"[:500])


# -- the run -------------------------------------------------------------------------------


@attrs.define(eq=False)
class Soak:
    options: argparse.Namespace
    recorder: SoakRecorder
    rng: random.Random
    submitted: int = 0
    completed: int = 0
    outcomes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    injected: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: submitted jobs whose outcome has not come (within ``--outcome-timeout``)
    in_flight: set[str] = attrs.field(factory=set)
    rss: list[tuple[int, float, int]] = attrs.field(factory=list)
    sigkills: int = 0
    #: jobs that ended ACQUIRE_FAILED while the pool had executors running jobs
    acquire_failed_while_busy: int = 0
    bookkeeping: dict[str, int] = attrs.field(factory=dict)
    statistics: dict[str, object] = attrs.field(factory=dict)
    seconds: float = 0.0

    def draw(self) -> tuple[str, object, float | None]:
        """The next job: its kind, payload and own timeout (None: the pool's)."""
        job_kinds = [k for k in self.options.kinds if k in JOB_KINDS]
        if job_kinds and self.rng.random() < self.options.fault_rate:
            kind = self.rng.choice(job_kinds)
        else:
            return "echo", Fault("echo", self.submitted), None
        if kind == "raise":
            return kind, Fault("raise", "injected"), None
        if kind == "crash":
            return kind, Fault("crash", 3), None
        if kind == "hang":
            return kind, Fault("hang"), None
        if kind == "cancel":
            return kind, Fault("sleep", self.rng.uniform(0.0, 0.02)), None
        # memory: well over the limit, held until the supervisor (every ping_interval)
        # sees it; the job's own timeout leaves it the time to.
        hold = Hold(self.options.memory_limit_mb + 64, 5.0)
        return kind, hold, 10.0

    def sample_rss(self) -> None:
        """Record the host's RSS (MiB) and its count of objects tracked by the garbage
        collector, after a collection."""
        gc.collect()
        rss = psutil.Process().memory_info().rss / MIB
        self.rss.append((self.completed, round(rss, 2), len(gc.get_objects())))

    async def lane(self, pool: Pool) -> None:
        options = self.options
        while self.submitted < options.jobs:
            serial = self.submitted
            self.submitted += 1
            kind, payload, timeout = self.draw()
            self.injected[kind] += 1
            job_id = f"soak-{serial}"
            self.in_flight.add(job_id)
            handle = await pool.submit(payload, timeout=timeout, job_id=job_id)
            if kind == "cancel":
                await anyio.sleep(self.rng.uniform(0.0, 0.02))
                handle.cancel()
            with anyio.move_on_after(options.outcome_timeout):
                outcome = await handle.outcome()
                self.in_flight.discard(job_id)
                reason = f"/{outcome.reason.value}" if outcome.reason else ""
                self.outcomes[f"{outcome.status.value}{reason}"] += 1
                if outcome.reason is FailureReason.ACQUIRE_FAILED and pool.statistics().busy:
                    self.acquire_failed_while_busy += 1
            self.completed += 1
            if self.completed % options.sample_every == 0 or self.completed == min(
                options.baseline_jobs, options.jobs
            ):
                self.sample_rss()

    async def sigkill_workers(self) -> None:
        """Every ``kill_interval``: SIGKILL one worker of the pool, found as a descendant
        of this process that is not one of the interpreter's helpers (fork servers)."""
        me = psutil.Process()
        while True:
            await anyio.sleep(self.options.kill_interval)
            helpers = helper_pids()
            try:
                workers = [p.pid for p in me.children(recursive=True) if p.pid not in helpers]
            except psutil.Error:
                continue
            if workers:
                try:
                    os.kill(self.rng.choice(workers), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.sigkills += 1

    async def run(self, config: PoolConfig) -> None:
        self.sample_rss()
        start = time.perf_counter()
        async with open_pool(config, observers=[self.recorder]) as pool:
            async with anyio.create_task_group() as tg:
                if "sigkill" in self.options.kinds:
                    tg.start_soon(self.sigkill_workers)
                async with anyio.create_task_group() as lanes:
                    for _ in range(self.options.in_flight):
                        lanes.start_soon(self.lane, pool)
                tg.cancel_scope.cancel()
            self.seconds = time.perf_counter() - start
            if self.rss[-1][0] != self.completed:
                self.sample_rss()
            self.bookkeeping = bookkeeping_of(pool)
            stats = pool.statistics()
            self.statistics = {
                "executors_started": stats.executors_started,
                "spawn_failures": stats.spawn_failures,
                "healthy": stats.healthy,
            }


def bookkeeping_of(pool: Pool) -> dict[str, int]:
    """The size of every container the pool and its state hold, once no job is in
    flight: what stays here grows with the jobs run."""
    sizes: dict[str, int] = {}
    for owner, prefix in ((pool, "Pool"), (pool._state, "PoolState")):
        for field in attrs.fields(type(owner)):
            value = getattr(owner, field.name)
            if isinstance(value, Sized) and not isinstance(value, str | bytes):
                sizes[f"{prefix}.{field.name}"] = len(value)
    return sizes


def helper_pids() -> set[int]:
    """The interpreter-wide helpers (forkservers, the resource tracker): not the pool's."""
    return interpreter_helpers().pids


def helper_fds() -> set[int]:
    return interpreter_helpers().fds


def open_fds() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except FileNotFoundError:  # no procfs: descriptors are not counted
        return set()


def pool_config(options: argparse.Namespace) -> PoolConfig:
    kinds = options.kinds
    return PoolConfig(
        backend=options.backend,
        entrypoint="soak_jobs:job" if options.capabilities.sync_entrypoints else "soak_jobs:ajob",
        setup="soak_jobs:setup",
        idle_executors=options.executors,
        max_executors=options.executors,
        job_timeout=options.job_timeout,
        memory_limit_mb=options.memory_limit_mb if "memory" in kinds else None,
        max_jobs_per_executor=options.recycle_every,
        ping_interval=0.1,
        spawn_backoff=0.01,
        spawn_backoff_max=0.5,
        max_pending=options.in_flight,
        close_timeout=5.0,
        drain_timeout=30.0,
    )


def verdict(options: argparse.Namespace, soak: Soak) -> dict[str, Any]:
    first = min(options.baseline_jobs, options.jobs)
    baseline = next((sample for sample in soak.rss if sample[0] >= first), soak.rss[0])
    end = soak.rss[-1]
    growth = end[1] - baseline[1]
    objects = end[2] - baseline[2]
    thousands = (end[0] - baseline[0]) / 1000
    judged = options.jobs >= JUDGED_FROM
    return {
        "baseline": {"jobs": baseline[0], "rss_mib": baseline[1], "gc_objects": baseline[2]},
        "end": {"jobs": end[0], "rss_mib": end[1], "gc_objects": end[2]},
        "growth_mib": round(growth, 2),
        "growth_mib_per_1000_jobs": round(growth / thousands, 4) if thousands > 0 else None,
        "gc_objects_growth": objects,
        "gc_objects_per_1000_jobs": round(objects / thousands, 1) if thousands > 0 else None,
        "max_growth_mib": options.max_growth_mib,
        "max_object_growth": options.max_object_growth,
        "judged": judged,
        "rss_ok": not judged or growth <= options.max_growth_mib,
        "objects_ok": not judged or objects <= options.max_object_growth,
    }


def soak(options: argparse.Namespace) -> dict[str, Any]:
    """Run the soak ``options`` ask for; return the report."""
    os.environ[SETUP_FAILURE_RATE] = str(
        options.setup_failure_rate if "setup" in options.kinds else 0.0
    )
    logs = CountingHandler()
    root = logging.getLogger()
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    shown = logging.StreamHandler()
    shown.setLevel(options.log_level.upper())
    root.addHandler(shown)
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    recorder = SoakRecorder(jobs=options.jobs)
    run = Soak(options, recorder, random.Random(options.seed))
    try:
        anyio.run(run.run, pool_config(options), backend="asyncio")
    finally:
        root.removeHandler(logs)
        root.removeHandler(shown)
    join_anyio_workers(threads_before)
    helpers = helper_pids()
    children = [
        p.pid
        for p in me.children(recursive=True)
        if p.pid not in children_before and p.pid not in helpers
    ]
    threads = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    fds = sorted(open_fds() - fds_before - helper_fds())
    finished = recorder.finished_count[: run.submitted]
    lost = {f"soak-{i}" for i, count in enumerate(finished) if count == 0} | run.in_flight
    return {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {
            "backend": options.backend,
            "jobs": options.jobs,
            "fault_rate": options.fault_rate,
            "faults": options.kinds,
            "executors": options.executors,
            "in_flight": options.in_flight,
            "job_timeout": options.job_timeout,
            "memory_limit_mb": options.memory_limit_mb if "memory" in options.kinds else None,
            "setup_failure_rate": options.setup_failure_rate if "setup" in options.kinds else 0,
            "recycle_every": options.recycle_every,
            "kill_interval": options.kill_interval if "sigkill" in options.kinds else None,
            "seed": options.seed,
        },
        "seconds": round(run.seconds, 2),
        "jobs_per_second": round(run.completed / run.seconds, 1) if run.seconds else None,
        "submitted": run.submitted,
        "injected": dict(sorted(run.injected.items())),
        "sigkills": run.sigkills,
        "pool_statistics": run.statistics,
        "acquire_failed_while_executors_busy": run.acquire_failed_while_busy,
        "outcomes": dict(sorted(run.outcomes.items())),
        "lost": len(lost),
        "lost_ids": sorted(lost, key=serial_of)[:20],
        "duplicated": sum(1 for count in finished if count > 1),
        "overlaps": len(recorder.overlaps),
        "executors_ready": len(recorder.ready),
        "executors_leaked": len(recorder.ready - recorder.closed),
        "left_behind": {"children": children, "threads": threads, "fds": fds},
        "bookkeeping_when_idle": run.bookkeeping,
        "log_records": dict(sorted(logs.counts.items())),
        "first_errors_logged": logs.errors,
        "rss_samples": run.rss,
        "memory": verdict(options, run),
    }


def join_anyio_workers(before: set[threading.Thread]) -> None:
    """anyio's worker threads are told to stop when their event loop ends, but nothing
    waits for them; wait here, so that the count of threads left sees them gone."""
    for thread in threading.enumerate():
        if thread not in before and thread.name == "AnyIO worker thread":
            thread.join(timeout=5.0)


def failures(report: dict[str, Any]) -> list[str]:
    """What makes the run fail, one line each."""
    problems = [
        f"{name}: {report[name]}"
        for name in ("lost", "duplicated", "overlaps", "executors_leaked")
        if report[name]
    ]
    problems += [f"left behind: {k} {v}" for k, v in report["left_behind"].items() if v]
    memory = report["memory"]
    if not memory["rss_ok"]:
        problems.append(
            f"host RSS grew {memory['growth_mib']} MiB > {memory['max_growth_mib']} MiB"
        )
    if not memory["objects_ok"]:
        problems.append(
            f"objects tracked by gc grew by {memory['gc_objects_growth']} > "
            f"{memory['max_object_growth']}"
        )
    return problems


def print_report(report: dict[str, Any]) -> None:
    settings, memory = report["settings"], report["memory"]
    print(
        f"backend {settings['backend']}: {report['submitted']} jobs in {report['seconds']} s "
        f"({report['jobs_per_second']} jobs/s), faults {','.join(settings['faults'])} "
        f"at {settings['fault_rate']}"
    )
    print(f"  injected: {report['injected']}, worker SIGKILLs: {report['sigkills']}")
    print(f"  pool: {report['pool_statistics']}")
    if report["acquire_failed_while_executors_busy"]:
        print(
            f"  ended acquire_failed while executors were running jobs: "
            f"{report['acquire_failed_while_executors_busy']}"
        )
    print("  outcomes:")
    for name, count in report["outcomes"].items():
        print(f"    {name:28}{count:>9}")
    for name in ("lost", "duplicated", "overlaps", "executors_ready", "executors_leaked"):
        print(f"  {name:30}{report[name]:>9}")
    left = report["left_behind"]
    print(
        f"  left behind: {len(left['children'])} children, {len(left['threads'])} threads, "
        f"{len(left['fds'])} fds"
    )
    kept = {k: v for k, v in report["bookkeeping_when_idle"].items() if v}
    print(f"  pool bookkeeping with no job in flight: {kept}")
    print(f"  log records: {report['log_records']}")
    for message in report["first_errors_logged"]:
        print(f"    {message}")
    per_1000 = memory["growth_mib_per_1000_jobs"]
    judged = "" if memory["judged"] else f" (not judged: under {JUDGED_FROM} jobs)"
    print(
        f"  host RSS: {memory['baseline']['rss_mib']} MiB after {memory['baseline']['jobs']} "
        f"jobs, {memory['end']['rss_mib']} MiB after {memory['end']['jobs']}: "
        f"{memory['growth_mib']:+} MiB ({per_1000} MiB per 1,000 jobs), "
        f"limit {memory['max_growth_mib']} MiB{judged}"
    )
    print(
        f"  objects tracked by gc: {memory['baseline']['gc_objects']} -> "
        f"{memory['end']['gc_objects']} ({memory['gc_objects_growth']:+}, "
        f"{memory['gc_objects_per_1000_jobs']} per 1,000 jobs), limit {memory['max_object_growth']}"
    )
    problems = failures(report)
    print("FAILED: " + "; ".join(problems) if problems else "OK")


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    report = soak(options)
    print_report(report)
    if options.json is not None:
        options.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if failures(report) else 0


if __name__ == "__main__":
    sys.exit(main())
