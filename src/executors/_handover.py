"""Handing a job over before the pool's launch bookkeeping (``Capabilities.hands_over_at_once``).

A ``run_job`` coroutine runs synchronously up to its first suspension: a thread or a
process backend has put the job on its queue or its socket by then, and waits. The
executor then needs a few tens of microseconds to wake up and pick the job up, time the
host spends waiting anyway. :func:`begin` takes the coroutine to that point at once, so
that the pool does its bookkeeping for the launch (its records, the job's handle, the
``executors_job_started`` hook) in that time instead of before the hand-off, and returns
an awaitable that finishes the run: awaiting it is awaiting ``run_job``, with the same
value, the same exceptions and the same cancellation.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine, Generator

T = TypeVar("T")


def begin(run: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Runs ``run`` to its first suspension; the awaitable returned finishes it.

    What ``run`` raises or returns before it suspends is raised or returned by the
    awaitable, so that the caller handles every ending of the run in one place.
    """
    try:
        yielded = run.send(None)
    except StopIteration as stop:
        return _returning(stop.value)
    except BaseException as exc:  # handed to the awaiter, see above
        return _raising(exc)
    return _resumed(run, yielded)


@types.coroutine
def _resumed(run: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    # What `yield from run` does, for a coroutine that has already yielded `yielded`:
    # that is passed to the event loop, and what the loop sends or throws in (a value,
    # a cancellation) is passed to the coroutine, which is closed with this one.
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            run.close()
            raise
        except BaseException as exc:
            try:
                yielded = run.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = run.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


async def _returning(value: T) -> T:
    return value


async def _raising(error: BaseException) -> Any:
    raise error
