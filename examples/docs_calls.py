"""Plain functions that the examples in docs/calls.md and docs/migrating.md run on
pools and executors (``from examples import docs_calls``). ``tests/test_docs.py`` runs
those examples.

They are defined at the top level of an importable module: a worker process of the
``process`` backend imports a function by its module and name."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import anyio

from executors.calls import current_job

if TYPE_CHECKING:
    from executors import JobContext


def square(x: int) -> int:
    """Return ``x * x``."""
    return x * x


def add(a: int, b: int = 0) -> int:
    """Return ``a + b``."""
    return a + b


def parse_int(text: str) -> int:
    """Return ``text`` as an integer; raises ``ValueError`` for anything else."""
    return int(text)


def sleep_for(seconds: float) -> float:
    """Block for ``seconds``, then return them: a long sync call."""
    time.sleep(seconds)
    return seconds


async def fetch_size(url: str) -> int:
    """An ``async def`` function, after a short wait that stands for I/O."""
    await anyio.sleep(0.01)
    return len(url)


def worker_pid() -> int:
    """The id of the process the call runs in."""
    return os.getpid()


def crash() -> None:
    """End the process at once, as a segfault in an extension would."""
    os._exit(1)


def load_prices(currency: str) -> dict[str, float]:
    """An initializer: builds what every call of one executor shares. Its return value
    is ``current_job().state`` in the calls."""
    rate = {"EUR": 1.0, "USD": 1.25}[currency]
    return {"apple": 0.5 * rate, "pear": 0.75 * rate}


def price_of(fruit: str) -> float | None:
    """Look ``fruit`` up in what :func:`load_prices` returned in this executor."""
    prices: dict[str, float] = current_job().state
    return prices.get(fruit)


def count_until_cancelled(limit: int) -> int:
    """A long sync call that stops early once the pool asks it to (on backends that
    run calls in threads), as long-running sync calls should."""
    job = current_job()
    count = 0
    while count < limit and not job.cancel_requested:
        time.sleep(0.001)
        count += 1
    return count


def load_vocabulary() -> dict[str, str]:
    """A setup for an entrypoint pool: loaded once per process, before its first job."""
    return {"hello": "bonjour", "world": "monde"}


def translate(ctx: JobContext) -> str:
    """An entrypoint: translates the payload's words with the setup's vocabulary."""
    vocabulary: dict[str, str] = ctx.state
    words: str = ctx.payload
    return " ".join(vocabulary.get(word, word) for word in words.split())
