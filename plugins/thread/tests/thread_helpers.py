"""What the thread backend tests share: a base config, an observer of executor closes and
supervision cycles, and ways to wait on threads without sleeping and hoping."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from executors import PoolConfig, hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from thread_jobs import Probe

    from executors import Pool, PoolStatistics

#: generous bound on anything that should take a fraction of a second on a quiet machine
PATIENCE = 20.0
#: the name of every executor thread starts with this
THREAD_PREFIX = "executors-thread-"
_POLL = 0.005


def config(**overrides: Any) -> PoolConfig:
    base: dict[str, Any] = {
        "backend": "thread",
        "entrypoint": "thread_jobs:thread_name",
        "idle_executors": 1,
        "max_executors": 1,
        "close_timeout": 0.3,
        "drain_timeout": 5.0,
        "spawn_backoff": 0.01,
        "spawn_backoff_max": 0.05,
    }
    base.update(overrides)
    return PoolConfig(**base)


@attrs.define(eq=False)
class Closes:
    """An observer plugin: why each executor closed, and how many supervision rounds ran."""

    reasons: dict[str, str] = attrs.field(factory=dict)
    supervision_rounds: int = 0

    @hookimpl
    def executors_executor_closed(self, executor_id: str, reason: str) -> None:
        assert executor_id not in self.reasons, f"{executor_id} reported closed twice"
        self.reasons[executor_id] = reason

    @hookimpl
    def executors_pool_statistics(self, statistics: PoolStatistics) -> None:
        self.supervision_rounds += 1

    def abandoned(self) -> set[str]:
        return {executor for executor, reason in self.reasons.items() if reason == "abandoned"}


async def until(condition: Callable[[], bool], within: float = PATIENCE) -> None:
    """Return once ``condition()`` holds; fail after ``within`` seconds. For what another
    thread changes, which no event of the host's loop announces."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- another thread changes it: no event to wait on
            await anyio.sleep(_POLL)


async def started(probe: Probe) -> threading.Thread:
    """The thread running the probe's job, once the job has started."""
    await until(probe.started.is_set)
    assert probe.thread is not None
    return probe.thread


async def wait_closed(pool: Pool, closes: Closes, executor_id: str) -> str:
    """The reason ``executor_id`` closed, once the pool reported it."""
    # The close hook is called just before the pool's state changes: wait_until sees it.
    with anyio.fail_after(PATIENCE):
        await pool.wait_until(lambda _: executor_id in closes.reasons)
    return closes.reasons[executor_id]


def executor_threads() -> Iterator[threading.Thread]:
    """Live threads started by the thread backend."""
    return (t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX))


def thread_of(executor_id: str) -> str:
    return f"{THREAD_PREFIX}{executor_id}"


def release_and_join(*probes: Probe) -> None:
    """Let jobs that ignored cancellation return, and wait for their abandoned threads to
    end: nothing the test started may outlive it."""
    for probe in probes:
        probe.release.set()
    for probe in probes:
        if probe.thread is not None:
            probe.thread.join(PATIENCE)
            assert not probe.thread.is_alive(), f"{probe.thread.name} did not end once released"
