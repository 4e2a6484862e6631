"""Jobs for the ray backend's tests, imported by name in Ray's workers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext


def load_state() -> dict[str, int]:
    """A setup: what it returns is every job's ``ctx.state`` on that executor."""
    return {"loaded_in": os.getpid()}


def where(ctx: JobContext) -> dict[str, object]:
    import ray

    return {
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id(),
        "state": ctx.state,
        "executor": ctx.executor_id,
        "payload": ctx.payload,
    }


def a_lock(ctx: JobContext) -> object:
    """A result no serializer takes."""
    return threading.Lock()


def held(ctx: JobContext) -> dict[str, object]:
    """Record a start in ``<dir>/<name>.starts``, then wait until ``<dir>/release``
    exists (at most ``seconds``); report where it ran."""
    directory, name, seconds = ctx.payload
    import ray

    node = ray.get_runtime_context().get_node_id()
    with (Path(directory) / f"{name}.starts").open("a") as starts:
        starts.write(f"{os.getpid()} {node}\n")
    deadline = time.monotonic() + seconds
    while not (Path(directory) / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"name": name, "node": node, "pid": os.getpid()}
