"""``pool.call`` and ``pool.map``: plain functions on a pool opened without an
entrypoint, on the process, thread and coroutine backends, with asyncio and trio hosts.
Every wait is bounded (``anyio.fail_after``)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from executors import JobFailed, Pool, PoolConfig, open_pool
from executors.calls import Call, RemoteTraceback
from tests import jobs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

WAIT = 60.0


@pytest.fixture(params=["process", "thread", "coroutine"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def on_pool(
    backend: str, host: str, body: Callable[[Pool], Awaitable[None]], **settings: Any
) -> None:
    config = PoolConfig(backend=backend, idle_executors=2, max_executors=2, **settings)

    async def main() -> None:
        async with open_pool(config) as pool:
            with anyio.fail_after(WAIT):
                await body(pool)

    anyio.run(main, backend=host)


def test_call_runs_a_plain_function(backend: str, host: str) -> None:
    async def body(pool: Pool) -> None:
        assert pool.runs_calls
        assert await pool.call(jobs.add, 2, b=40) == 42
        assert await pool.call(pow, 3, 3) == 27

    on_pool(backend, host, body)


def test_call_raises_what_the_function_raised(backend: str, host: str) -> None:
    async def body(pool: Pool) -> None:
        with pytest.raises(ValueError, match="no good") as info:
            await pool.call(jobs.fail_with, "no good")
        if backend == "process":
            assert isinstance(info.value.__cause__, RemoteTraceback)
            assert "fail_with" in str(info.value.__cause__)

    on_pool(backend, host, body)


def test_a_call_reaches_its_setups_state(host: str) -> None:
    async def body(pool: Pool) -> None:
        assert await pool.call(jobs.call_state) == {"model": "loaded"}

    on_pool("thread", host, body, setup="tests.jobs:make_state")


def test_a_pool_with_an_entrypoint_refuses_calls_saying_why() -> None:
    async def main() -> None:
        config = PoolConfig(backend="thread", entrypoint="tests.jobs:state_of")
        async with open_pool(config) as pool:
            assert not pool.runs_calls
            with pytest.raises(TypeError, match=r"runs the entrypoint 'tests\.jobs:state_of'"):
                await pool.call(jobs.add, 1, 2)
            with pytest.raises(TypeError, match="runs the entrypoint"):
                pool.map(jobs.add, [1])

    anyio.run(main)


def test_a_payload_that_is_not_a_call_fails_its_job_saying_why() -> None:
    async def main() -> None:
        async with open_pool(PoolConfig(backend="thread")) as pool:
            with anyio.fail_after(WAIT), pytest.raises(JobFailed, match="is not a call"):
                await pool.run({"not": "a call"})
            assert await pool.run(Call(jobs.add, (1, 2))) == 3

    anyio.run(main)


@pytest.mark.parametrize("chunksize", [1, 4])
def test_map_is_ordered_and_chunked(backend: str, host: str, chunksize: int) -> None:
    async def body(pool: Pool) -> None:
        async with pool.map(jobs.add, range(30), range(30), chunksize=chunksize) as values:
            assert [v async for v in values] == [2 * i for i in range(30)]

    on_pool(backend, host, body)


@pytest.mark.parametrize("chunksize", [1, 4])
def test_awaitables_a_plain_function_returns_are_awaited(
    backend: str, host: str, chunksize: int
) -> None:
    async def body(pool: Pool) -> None:
        assert await pool.call(jobs.add_later, 2, 3) == 5
        async with pool.map(jobs.add_later, range(9), range(9), chunksize=chunksize) as values:
            assert [v async for v in values] == [2 * i for i in range(9)]

    on_pool(backend, host, body)


def test_map_as_completed_gives_every_value_once(backend: str, host: str) -> None:
    async def body(pool: Pool) -> None:
        async with pool.map(abs, range(-20, 0), ordered=False, chunksize=3) as values:
            assert sorted([v async for v in values]) == list(range(1, 21))

    on_pool(backend, host, body)


@pytest.mark.parametrize("ordered", [True, False])
def test_map_reads_lazily_with_bounded_jobs_in_flight(backend: str, ordered: bool) -> None:
    endless = jobs.Endless()

    async def body(pool: Pool) -> None:
        taken = []
        async with pool.map(abs, endless, ordered=ordered, chunksize=5, max_in_flight=3) as values:
            async for value in values:
                taken.append(value)
                assert endless.read <= len(taken) + 4 * 5  # the buffer, refilled as values go
                if len(taken) == 50:
                    break
        assert len(taken) == 50
        if ordered:
            assert taken == list(range(50))

    on_pool(backend, "asyncio", body)


def test_leaving_a_map_early_cancels_what_is_left(backend: str, host: str, tmp_path: Path) -> None:
    # the first job returns at once, the others would wait 30 s
    markers = [str(tmp_path / f"m{i}") for i in range(6)]
    seconds = [0.0] + [30.0] * 5

    async def body(pool: Pool) -> None:
        async with pool.map(jobs.wait_marked, markers, seconds, max_in_flight=3) as values:
            async for value in values:
                assert value == "waited"
                break
        # the two jobs in flight are cancelled, not left to run their 30 s
        with anyio.fail_after(10):
            await pool.wait_until(lambda s: s.busy == 0 and s.waiting == 0)
        stats = pool.statistics()
        assert stats.jobs_cancelled == 2, stats
        assert stats.jobs_succeeded == 1, stats
        assert await pool.call(jobs.add, 1, 1) == 2

    on_pool(backend, host, body)


def test_a_cancelled_map_cancels_its_jobs_and_the_pool_serves_on(
    backend: str, host: str, tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        markers = [str(tmp_path / f"m{i}") for i in range(4)]
        # cancelled once two jobs run (on both executors) and two wait
        with anyio.CancelScope() as scope:

            async def cancel_when_both_run() -> None:
                await pool.wait_until(lambda s: s.busy == 2 and s.waiting == 2)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_both_run)
                async with pool.map(jobs.wait_marked, markers, [30.0] * 4) as values:
                    async for _ in values:  # pragma: no cover
                        pass
        assert scope.cancelled_caught
        await pool.wait_until(lambda s: s.busy == 0 and s.waiting == 0)
        assert await pool.call(jobs.add, 1, 1) == 2
        stats = pool.statistics()
        assert stats.jobs_cancelled == 4

    on_pool(backend, host, body)


def test_a_failing_item_raises_its_exception_and_cancels_the_rest(
    backend: str, tmp_path: Path
) -> None:
    async def body(pool: Pool) -> None:
        items = ["bad", *[str(tmp_path / f"m{i}") for i in range(3)]]

        async def consume() -> list[object]:
            async with pool.map(_fail_or_wait, items, max_in_flight=4) as values:
                return [v async for v in values]

        with pytest.raises(ValueError, match="bad"):
            await consume()
        await pool.wait_until(lambda s: s.busy == 0 and s.waiting == 0)

    on_pool(backend, "asyncio", body)


def test_map_arguments_are_checked(host: str) -> None:
    async def body(pool: Pool) -> None:
        with pytest.raises(ValueError, match="chunksize must be a whole number"):
            pool.map(abs, [1], chunksize=0)
        with pytest.raises(ValueError, match="max_in_flight must be"):
            pool.map(abs, [1], max_in_flight=-1)
        with pytest.raises(TypeError, match="at least one iterable"):
            pool.map(abs)

    on_pool("thread", host, body)


async def _fail_or_wait(item: str) -> str:
    if item == "bad":
        raise ValueError("bad")
    return await jobs.wait_marked(item, 30.0)


def test_map_holds_no_item_once_its_value_is_taken(backend: str) -> None:
    items = jobs.WatchedItems(1000)

    async def body(pool: Pool) -> None:
        gc.disable()  # only a reference cycle could keep an item now
        try:
            async with pool.map(jobs.value_of, items, chunksize=50, ordered=False) as values:
                assert sorted([v async for v in values]) == list(range(1000))
            alive = items.alive()
        finally:
            gc.enable()
        assert not alive, f"{alive} of 1000 items are still held after the map"

    on_pool(backend, "asyncio", body)


def test_run_and_submit_take_a_jobs_own_memory_limit() -> None:
    async def body(pool: Pool) -> None:
        call = Call(jobs.hold_memory, (400, 60.0))
        with pytest.raises(JobFailed, match="memory_limit"):
            await pool.run(call, memory_limit_mb=200)
        handle = await pool.submit(call, memory_limit_mb=200)
        outcome = await handle.outcome()
        assert outcome.reason is not None
        assert outcome.reason.value == "memory_limit"
        assert await pool.run(Call(jobs.hold_memory, (50, 0.1)), memory_limit_mb=300) == (
            "held 50 MiB"
        )

    on_pool("process", "asyncio", body, ping_interval=0.1)
