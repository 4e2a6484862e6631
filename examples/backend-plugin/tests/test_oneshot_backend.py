"""The oneshot backend's own behaviour, with real processes, under asyncio and trio hosts."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import anyio
import psutil
import pytest

import executors_oneshot
from executors import (
    AcquireError,
    ConfigError,
    EntrypointError,
    ExecutorState,
    FailureReason,
    Job,
    JobExecutor,
    JobOutcome,
    JobStatus,
    LaunchError,
    PoolConfig,
    Registry,
    open_pool,
)
from executors.testing import no_leaks
from executors_oneshot import OneshotBackend, OneshotOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

#: generous bound on anything that should take a second or two on a quiet machine
PATIENCE = 30.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test runs under an asyncio host and a trio host."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_leaked_processes_threads_or_fds() -> Iterator[None]:
    """Nothing a test started outlives it: no job process (zombies included), thread or
    file descriptor."""
    with no_leaks():
        yield


def config(**overrides: Any) -> PoolConfig:
    settings: dict[str, Any] = {
        "backend": "oneshot",
        "entrypoint": "oneshot_jobs:pid",
        "idle_executors": 1,
        "max_executors": 1,
        "close_timeout": 2.0,
        "drain_timeout": 2.0,
        "spawn_backoff": 0.01,
        "spawn_backoff_max": 0.05,
    }
    settings.update(overrides)
    return PoolConfig(**settings)


async def test_the_plugin_registers_the_backend_through_its_hook() -> None:
    registry = Registry.empty()
    registry.register_plugin(executors_oneshot)
    assert not registry.broken()
    backend = registry.backend("oneshot")
    assert backend.options is executors_oneshot.OneshotOptions
    assert backend.capabilities.isolates_crashes
    assert backend.capabilities.can_kill_running_job
    assert not backend.capabilities.setup_per_pool


@pytest.mark.parametrize("entrypoint", ["oneshot_jobs:pid", "oneshot_jobs:apid"])
async def test_each_job_runs_in_a_new_process_on_the_same_executor(entrypoint: str) -> None:
    async with open_pool(config(entrypoint=entrypoint)) as pool:
        with anyio.fail_after(PATIENCE):
            pids = [await pool.run(None) for _ in range(3)]
        stats = pool.statistics()
    assert len(set(pids)) == 3
    assert os.getpid() not in pids
    assert stats.executors_started == 1


async def test_the_setup_runs_in_every_job_process() -> None:
    cfg = config(entrypoint="oneshot_jobs:pid_and_state", setup="oneshot_jobs:setup_pid")
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            results = [await pool.run(None) for _ in range(2)]
    for pid, state in results:
        assert state == pid  # the setup's state comes from the job's own process
    assert results[0] != results[1]


async def test_what_a_job_prints_goes_to_stderr_and_never_corrupts_its_reply(
    capfd: pytest.CaptureFixture[str],
) -> None:
    payload = {"text": "intact", "numbers": list(range(100))}
    async with open_pool(config(entrypoint="oneshot_jobs:noisy")) as pool:
        with anyio.fail_after(PATIENCE):
            assert await pool.run(payload) == payload
    out, err = capfd.readouterr()
    assert "a print that must not reach the reply" in err
    assert "written straight to file descriptor 1" in err
    assert "and a last one" in err
    assert "must not reach" not in out


async def test_a_job_reads_nothing_on_stdin() -> None:
    async with open_pool(config(entrypoint="oneshot_jobs:reads_stdin")) as pool:
        with anyio.fail_after(PATIENCE):
            assert await pool.run(None) == ""


@pytest.mark.parametrize(
    ("entrypoint", "payload", "how"),
    [
        ("executors.testing.jobs:crash", 3, "exit code 3"),
        ("oneshot_jobs:kill_itself", "kill", "killed by signal 9 (SIGKILL)"),
    ],
)
async def test_a_crash_fails_its_job_naming_how_the_process_ended(
    entrypoint: str, payload: object, how: str
) -> None:
    async with open_pool(config(entrypoint=entrypoint)) as pool:
        with anyio.fail_after(PATIENCE):
            crashed = await (await pool.submit(payload)).outcome()
            after = await pool.run("still serving")
        stats = pool.statistics()
    assert crashed.reason is FailureReason.CRASHED
    assert crashed.error is not None
    assert crashed.error.message.endswith(f"exited without replying: {how}")
    assert after == "still serving"
    assert stats.executors_started == 1  # the crash cost a process, not the executor


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_a_stopped_job_has_its_process_killed_at_once(stop: str, tmp_path: Path) -> None:
    cfg = config(
        entrypoint="oneshot_jobs:record_pid_then_hang",
        job_timeout=1.0 if stop == "timeout" else None,
    )
    pid_file = tmp_path / "pid"
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            handle = await pool.submit(str(pid_file))
            pid = await _pid_written_to(pid_file)
            assert psutil.pid_exists(pid)
            if stop == "cancel":
                handle.cancel()
            outcome = await handle.outcome()
            # The run reaps its process before it ends: the pid is gone, zombie included.
            assert not psutil.pid_exists(pid)
            assert await pool.run(None) != pid
    expected = JobStatus.CANCELLED if stop == "cancel" else JobStatus.TIMED_OUT
    assert outcome.status is expected


async def test_kill_ends_the_running_job_killed_and_closes_the_executor(tmp_path: Path) -> None:
    """The executor on its own, driven as the pool drives it."""
    pid_file = tmp_path / "pid"
    cfg = config(entrypoint="oneshot_jobs:record_pid_then_hang")
    outcomes: list[JobOutcome] = []
    with anyio.fail_after(PATIENCE):
        async with OneshotBackend().open(cfg, OneshotOptions()) as factory:
            executor = factory.create_executor("oneshot-1")
            await executor.start()
            assert _state(executor) is ExecutorState.READY

            async def run(job: Job) -> None:
                outcomes.append(await executor.run_job(job))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run, Job("job-1", str(pid_file)))
                pid = await _pid_written_to(pid_file)
                assert _state(executor) is ExecutorState.BUSY
                await executor.kill()
                await executor.kill()  # idempotent
            assert not psutil.pid_exists(pid)
            assert _state(executor) is ExecutorState.CLOSED
            assert not executor.health().alive
            with pytest.raises(LaunchError, match="oneshot-1 cannot take job job-2: it is closed"):
                await executor.run_job(Job("job-2", None))
            await executor.aclose()
    [killed] = outcomes
    assert killed.reason is FailureReason.KILLED


async def test_a_payload_that_does_not_pickle_fails_only_its_job() -> None:
    async with open_pool(config(entrypoint="executors.testing.jobs:echo")) as pool:
        with anyio.fail_after(PATIENCE):
            failed = await (await pool.submit(lambda: None)).outcome()
            after = await pool.run("next")
        stats = pool.statistics()
    assert failed.reason is FailureReason.RAISED
    assert failed.error is not None
    assert failed.error.type_name == "_pickle.PicklingError"
    assert failed.error.message.startswith(f"the payload of job {failed.job_id} cannot be pickled")
    assert after == "next"
    assert stats.executors_started == 1


async def test_a_result_that_does_not_pickle_fails_its_job() -> None:
    async with open_pool(config(entrypoint="oneshot_jobs:returns_a_lambda")) as pool:
        with anyio.fail_after(PATIENCE):
            failed = await (await pool.submit(None)).outcome()
    assert failed.reason is FailureReason.RAISED
    assert failed.error is not None
    assert failed.error.message.startswith(f"the result of job {failed.job_id} cannot be pickled")


async def test_a_failing_setup_fails_start_with_its_own_exception() -> None:
    cfg = config(setup="executors.testing.jobs:setup_raises", acquire_attempts=1)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run(None)
    cause = info.value.__cause__
    assert type(cause).__name__ == "InjectedFault"
    notes = "\n".join(getattr(cause, "__notes__", []))
    assert "raised by setup 'executors.testing.jobs:setup_raises'" in notes
    assert "the start check of executor" in notes


async def test_option_inherit_sys_path_off_leaves_the_tests_directory_out() -> None:
    cfg = config(acquire_attempts=1, backend_options={"inherit_sys_path": False})
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE), pytest.raises(AcquireError) as info:
            await pool.run(None)
    assert isinstance(info.value.__cause__, EntrypointError)
    assert "cannot import module 'oneshot_jobs'" in str(info.value.__cause__)


async def test_option_python_names_the_interpreter() -> None:
    cfg = config(backend_options={"python": sys.executable})
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            assert await pool.run(None) != os.getpid()
    with pytest.raises(ConfigError, match=r"oneshot\.python = 'no-such-python'.*interpreter"):
        async with open_pool(config(backend_options={"python": "no-such-python"})):
            pass


async def _pid_written_to(path: Path) -> int:
    """The pid a job wrote to ``path``, once it has written it."""
    await _until(path.exists)
    return _read_pid(path)


async def _until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (quick and non-blocking). For what no event
    announces, such as a file that a job's process writes."""
    while not condition():  # noqa: ASYNC110 -- another process changes it: no event to wait on
        await anyio.sleep(0.01)


def _state(executor: JobExecutor) -> ExecutorState:
    # A call, so that the type checker does not narrow the property across awaits.
    return executor.state


def _read_pid(path: Path) -> int:
    with open(path) as file:  # written whole (renamed into place), a few bytes
        return int(file.read())
