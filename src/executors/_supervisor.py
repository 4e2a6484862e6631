"""The pool's supervisor: reads the health of its executors and reports it to the state,
which decides what becomes of an executor that died or went over a limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._pool import Pool


async def supervise(pool: Pool) -> None:
    """Every ``ping_interval``: report the health of each executor; then the pool's
    statistics to the ``executors_pool_statistics`` hook."""
    while True:
        await anyio.sleep(pool.config.ping_interval)
        for executor_id in pool._state.supervised():
            check(pool, executor_id)
        if pool._observers.wants("executors_pool_statistics"):
            pool._observers.call(
                "executors_pool_statistics", pool_name=pool.name, statistics=pool.statistics()
            )


async def watch_exit(
    pool: Pool, executor_id: str, wait_exited: Callable[[], Awaitable[None]]
) -> None:
    """Report an executor's health as soon as it is gone (``wait_exited()`` returned): if
    it died while the pool still counts on it, it is replaced now, not at the next check."""
    await wait_exited()
    check(pool, executor_id)


def check(pool: Pool, executor_id: str) -> None:
    """Report the health of ``executor_id``, if the pool still counts on it."""
    executor = pool._executors.get(executor_id)
    if executor is not None and pool._state.supervises(executor_id):
        pool._perform(pool._state.health_checked(executor_id, executor.health(), pool._now()))
