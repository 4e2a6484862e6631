"""The process backend with real worker processes: entrypoints, setup, logging,
recycling and options."""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio
import psutil
import pytest
from process_helpers import PATIENCE, config

from executors import ConfigError, EntrypointError, open_pool

pytestmark = pytest.mark.anyio


async def test_jobs_run_in_worker_processes() -> None:
    async with open_pool(
        backend="process", entrypoint="process_jobs:pid", idle_executors=2, max_executors=2
    ) as pool:
        pids = {await pool.run(None) for _ in range(4)}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


@pytest.mark.parametrize(
    "entrypoint", ["process_jobs:pid_and_state", "process_jobs:apid_and_state"]
)
async def test_sync_and_async_entrypoints_see_the_state_of_a_setup_run_once_per_worker(
    entrypoint: str,
) -> None:
    cfg = config(
        entrypoint=entrypoint,
        setup="process_jobs:counting_setup",
        idle_executors=2,
        max_executors=2,
    )
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            await pool.wait_until(lambda s: s.idle == 2)
            handles = [await pool.submit(None) for _ in range(6)]
            results: list[tuple[int, Any]] = [await h.result() for h in handles]
    for pid, state in results:
        # The setup ran in the process that runs the job, and only once there.
        assert state == {"pid": pid, "calls": 1}
    assert os.getpid() not in {pid for pid, _ in results}


async def test_worker_logging_reaches_the_host_with_executor_and_job_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_pool(config(entrypoint="process_jobs:log_warning")) as pool:
        with anyio.fail_after(PATIENCE):
            job_id = await pool.run("payload 5")
    [record] = [r for r in caplog.records if r.name == "process_jobs"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "hello from the worker: payload 5"
    assert vars(record)["job_id"] == job_id
    assert vars(record)["executor_id"].startswith(pool.name)
    assert record.process != os.getpid()


@pytest.mark.parametrize(
    ("host_level", "forwarded"), [(logging.INFO, True), (logging.WARNING, False)]
)
async def test_a_worker_logs_at_the_level_the_host_had_when_it_started(
    caplog: pytest.LogCaptureFixture, host_level: int, forwarded: bool
) -> None:
    # Workers start at WARNING, the default: INFO must be set in them, WARNING not.
    caplog.set_level(host_level)
    async with open_pool(config(entrypoint="process_jobs:log_info")) as pool:
        with anyio.fail_after(PATIENCE):
            job_id = await pool.run("payload 6")
    records = [r for r in caplog.records if r.name == "process_jobs"]
    assert [(r.levelno, r.getMessage(), vars(r)["job_id"]) for r in records] == (
        [(logging.INFO, "info from the worker: payload 6", job_id)] if forwarded else []
    )


async def test_max_jobs_per_executor_1_gives_a_fresh_process_per_job() -> None:
    cfg = config(entrypoint="process_jobs:pid", max_jobs_per_executor=1)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            pids = [await pool.run(None) for _ in range(3)]
    assert len(set(pids)) == 3


async def test_recycle_memory_mb_recycles_a_worker_left_over_it_after_a_job() -> None:
    cfg = config(entrypoint="process_jobs:keep_memory", backend_options={"recycle_memory_mb": 100})
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            first = [await pool.run(0) for _ in range(2)]
            hog = await pool.run(150)  # keeps 150 MiB alive after it returns
            after = await pool.run(0)
    assert first == [hog, hog], "a worker under recycle_memory_mb is kept"
    assert after != hog


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_spawn_start_method_runs_workers_as_fresh_children(anyio_backend: str) -> None:
    cfg = config(
        entrypoint="process_jobs:pid_and_state",
        setup="process_jobs:counting_setup",
        backend_options={"start_method": "spawn"},
    )
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            pid, state = await pool.run(None)
            # Spawned by this process itself, not forked by the forkserver.
            assert psutil.Process(pid).ppid() == os.getpid()
    assert state == {"pid": pid, "calls": 1}


async def test_an_invalid_start_method_is_a_config_error_naming_the_option() -> None:
    cfg = config(backend_options={"start_method": "fork"})
    with pytest.raises(ConfigError, match="start_method") as info:
        async with open_pool(cfg):
            pass
    assert "'fork'" in str(info.value)


def _nested() -> Any:
    def job(ctx: object) -> int:
        return 1

    return job


@pytest.mark.parametrize("what", ["entrypoint", "setup"])
@pytest.mark.parametrize(
    ("made", "name"),
    [
        (lambda: lambda ctx: 1, "<lambda>"),
        (_nested, "_nested.<locals>.job"),
    ],
    ids=["lambda", "nested function"],
)
async def test_a_function_a_worker_cannot_import_by_name_is_refused_before_any_start(
    what: str, made: Any, name: str
) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cfg = config(entrypoint="process_jobs:pid").evolve(**{what: made()})
    with pytest.raises(EntrypointError, match=f"{what} .*{name}' cannot be sent to a worker"):
        async with open_pool(cfg):
            pass
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not started, "no worker (nor forkserver) is started for it"
