"""The ray backend's tests share one local Ray, started before the first test and shut
down after the last. After each test no executor's actor process is left; after the
last, no process of that Ray is left."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from ray_helpers import GONE_WITHIN, RAY_CPUS, SLOTS, actor_processes, ray_processes, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

# Before Ray starts: its workers (started by its raylet, which inherits this
# environment) import the jobs of these tests and the docs' examples by name, and report
# no usage statistics.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs under an asyncio host and a trio host."""
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def local_ray() -> Iterator[None]:
    import ray

    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        resources={"slot": SLOTS},
        include_dashboard=False,
        log_to_driver=False,
    )
    session_dir = _session_dir()
    try:
        yield
    finally:
        ray.shutdown()
        left = wait_for(lambda: ray_processes(session_dir), GONE_WITHIN)
        assert not left, f"Ray processes left {GONE_WITHIN}s after ray.shutdown(): {left}"


def _session_dir() -> str:
    # The directory every process of this Ray names on its command line.
    import ray._private.worker

    node = cast("Any", ray._private.worker)._global_node
    return str(node.get_session_dir_path())


@pytest.fixture(autouse=True)
def _no_actor_left() -> Iterator[None]:
    """After every test: no executor's actor process is left (the pool killed it, and
    Ray ended it)."""
    yield
    left = wait_for(actor_processes, GONE_WITHIN)
    assert not left, f"actor processes left {GONE_WITHIN}s after the test: {left}"
