"""Entrypoints and setups that docs/process.md refers to as
``"examples.process_jobs:<name>"``. Worker processes import this module by that name:
``multiprocessing`` hands them the host's ``sys.path``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext

logger = logging.getLogger("examples.process_jobs")

# Memory a job chose to keep, per worker process.
_KEPT: list[bytes] = []


def digest(ctx: JobContext) -> str:
    """CPU-bound work: SHA-256 applied ``payload`` times to an empty string."""
    value = b""
    for _ in range(int(ctx.payload)):
        value = hashlib.sha256(value).digest()
    return value.hex()


def load_model() -> dict[str, int]:
    """A setup: stands for loading a model; records the process it ran in."""
    return {"loaded_in": os.getpid()}


def predict(ctx: JobContext) -> tuple[int, int]:
    """The process this job runs in, and the one its setup ran in."""
    model: dict[str, int] = ctx.state
    return os.getpid(), model["loaded_in"]


async def fetch(ctx: JobContext) -> str:
    """An async entrypoint: it runs on an event loop inside the worker."""
    await asyncio.sleep(0.01)
    return f"fetched {ctx.payload}"


def pause(ctx: JobContext) -> float:
    """Sleep for ``payload`` seconds, then return it."""
    time.sleep(float(ctx.payload))
    return float(ctx.payload)


def exit_with(ctx: JobContext) -> None:
    """End the worker process with exit code ``payload``, as a crashing library might."""
    os._exit(int(ctx.payload))


def freeze(ctx: JobContext) -> None:
    """Stop the whole worker process (SIGSTOP), so that it no longer answers pings."""
    os.kill(os.getpid(), signal.SIGSTOP)


def keep_memory(ctx: JobContext) -> int:
    """Keep ``payload`` MiB alive in the worker after the job; return the worker's pid."""
    _KEPT.append(b"\x01" * (int(ctx.payload) << 20))  # written: every page is resident
    return os.getpid()


def grow(ctx: JobContext) -> None:
    """Take ``payload`` MiB, then keep running until something stops the job."""
    data = b"\x01" * (int(ctx.payload) << 20)
    time.sleep(60)
    del data


def report(ctx: JobContext) -> str:
    """Log a warning from the worker; return the job's id."""
    logger.warning("working on %r", ctx.payload)
    return ctx.job_id


def make_lock(ctx: JobContext) -> threading.Lock:
    """Return a value that cannot be pickled."""
    return threading.Lock()


class QuotaExceeded(Exception):
    """An exception that pickles: it travels back to the host as it is."""


def charge(ctx: JobContext) -> None:
    raise QuotaExceeded(f"no quota left for {ctx.payload}")
