"""The ray backend through real pools on a local Ray (see conftest.py)."""

from __future__ import annotations

import operator
import os
from typing import TYPE_CHECKING

import anyio
import pytest
from ray_helpers import SLOTS, actor_processes

from executors import (
    ConfigError,
    FailureReason,
    JobFailed,
    PoolConfig,
    load_config,
    open_pool,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio
WAIT = 60.0


def config(*, graphs: bool = False, **settings: object) -> PoolConfig:
    values: dict[str, object] = {
        "backend": "ray",
        "entrypoint": "ray_jobs:where",
        "idle_executors": 2,
        "max_executors": 2,
        "backend_options": {"compiled_graphs": graphs},
    }
    values.update(settings)
    return PoolConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(params=[False, True], ids=["calls", "graphs"])
def graphs(request: pytest.FixtureRequest) -> bool:
    """The jobs' path: plain actor calls, or each executor's compiled graph."""
    return bool(request.param)


async def test_jobs_run_in_actors_with_their_setups_state(graphs: bool) -> None:
    async with open_pool(config(setup="ray_jobs:load_state", graphs=graphs)) as pool:
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= 2)
            seen = [await pool.run(i) for i in range(6)]
    assert [s["payload"] for s in seen] == list(range(6))
    pids = {s["pid"] for s in seen}
    assert os.getpid() not in pids
    # the setup ran in the actor that runs the jobs, once per executor
    assert all(s["state"] == {"loaded_in": s["pid"]} for s in seen)
    assert len({s["executor"] for s in seen}) <= 2


async def test_a_payload_ray_cannot_serialize_fails_only_its_job(graphs: bool) -> None:
    import threading

    async with open_pool(config(idle_executors=1, max_executors=1, graphs=graphs)) as pool:
        with anyio.fail_after(WAIT), pytest.raises(JobFailed) as info:
            await pool.run(threading.Lock())
        outcome = info.value.outcome
        assert outcome.reason is FailureReason.RAISED
        assert outcome.error is not None
        assert "payload of job" in outcome.error.message
        assert "cannot be serialized" in outcome.error.message
        with anyio.fail_after(WAIT):
            assert (await pool.run("next"))["payload"] == "next"


async def test_a_result_ray_cannot_serialize_fails_only_its_job(graphs: bool) -> None:
    cfg = config(entrypoint="ray_jobs:a_lock", idle_executors=1, max_executors=1, graphs=graphs)
    async with open_pool(cfg) as pool:
        with anyio.fail_after(WAIT), pytest.raises(JobFailed) as info:
            await pool.run(None)
        error = info.value.outcome.error
        assert error is not None
        assert "result of job" in error.message
        assert "cannot be serialized" in error.message
        # the actor lives on and serves the next job
        assert pool.statistics().jobs_failed == 1
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle == 1)
        assert pool.statistics().executors_started == 1


async def test_a_crashed_actor_fails_only_its_job_and_is_replaced(graphs: bool) -> None:
    async with open_pool(config(entrypoint=None, graphs=graphs)) as pool:
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= 2)
            with pytest.raises(JobFailed) as info:
                await pool.call(os._exit, 3)
            assert info.value.outcome.reason is FailureReason.CRASHED
            assert "died running job" in str(info.value)
            assert await pool.call(operator.add, 2, 3) == 5
            await pool.wait_until(lambda s: s.idle >= 2)
        assert pool.statistics().executors_started == 3


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("num_cpus", -1, "expected a number >= 0"),
        ("num_gpus", "two", "expected a number"),
        ("resources", {"slot": -1}, "amounts >= 0"),
        ("resources", {"CPU": 1}, "set CPU with the option num_cpus"),
        ("resources", "not json", "nor JSON text"),
        ("runtime_env", ["pip"], "expected a table"),
        ("address", "", "expected 'auto'"),
        ("connect_timeout", 0, "connect_timeout"),
        ("compiled_graphs", "sometimes", "compiled_graphs"),
        ("adress", "auto", "adress"),
    ],
)
async def test_bad_options_are_config_errors_naming_the_option(
    option: str, value: object, says: str
) -> None:
    with pytest.raises(ConfigError, match=rf"ray\.{option}") as info:
        async with open_pool(config(backend_options={option: value})):
            pass
    assert says in str(info.value)


async def test_options_from_the_environment_reach_ray(tmp_path: Path) -> None:
    # JSON text in a variable is a table; every executor takes one "slot" of the
    # SLOTS the test Ray has: one more than that cannot be placed
    environ = {
        "EXECUTORS_BACKEND": "ray",
        "EXECUTORS_ENTRYPOINT": "ray_jobs:where",
        "EXECUTORS_IDLE_EXECUTORS": str(SLOTS),
        "EXECUTORS_MAX_EXECUTORS": str(SLOTS + 1),
        "EXECUTORS_RAY__RESOURCES": '{"slot": 1}',
        "EXECUTORS_RAY__NUM_CPUS": "0",
    }
    loaded = load_config(directory=tmp_path, environ=environ)
    assert loaded.config.backend_options["resources"] == '{"slot": 1}'
    async with open_pool(loaded) as pool:
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= SLOTS)
    assert pool.statistics().executors_started == SLOTS


async def test_executors_no_node_can_place_fail_to_start_and_leave_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = config(
        idle_executors=0,
        max_executors=1,
        initialize_timeout=1.0,
        acquire_attempts=2,
        backend_options={"resources": {"a resource no node has": 1}},
    )
    async with open_pool(cfg) as pool:
        with anyio.fail_after(WAIT), pytest.raises(JobFailed) as info:
            await pool.run(None)
        assert info.value.outcome.reason is FailureReason.ACQUIRE_FAILED
        assert "initialize_timeout" in str(info.value)
    assert not actor_processes()
    # the log says why, and what the executor asked for
    unplaced = [r.getMessage() for r in caplog.records if "before Ray placed" in r.getMessage()]
    assert unplaced, "no warning said the actor was never placed"
    assert "a resource no node has=1" in unplaced[0]
