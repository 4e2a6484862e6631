"""``Pool.map``: a function over the items of iterables, as jobs, with bounded work in
flight, in order or as completed."""

from __future__ import annotations

import collections
import itertools
from typing import TYPE_CHECKING, Any

import anyio

from . import calls
from ._handle import own_exception, result_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType

    from ._handle import JobHandle
    from ._job import JobOutcome
    from ._pool import Pool


def whole_number(name: str, value: object, *, optional: bool = False) -> None:
    """A clear error unless ``value`` is a whole number of at least 1 (or None, when
    ``optional``): sizes users pass to map and the PoolExecutor."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a whole number of at least 1" + (" or None" if optional else "")
        msg = f"{name} must be {expected}, not {value!r}"
        raise ValueError(msg)


def check_map_arguments(
    chunksize: object, max_in_flight: object, name: str = "max_in_flight"
) -> None:
    """Clear errors for a map's sizes (shared with the PoolExecutor's ``map``)."""
    whole_number("chunksize", chunksize)
    whole_number(name, max_in_flight, optional=True)


def payloads(
    function: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    chunksize: int,
    *,
    asynchronous: bool,
) -> Iterator[calls.Call]:
    """The payload of each job of a map, read from ``iterables`` as it is asked for: a
    call of ``function`` on one item, or of :func:`executors.calls.run_chunk` (its
    ``async`` twin on a backend of async functions) on ``chunksize`` items. One
    iterable's items go as they are, several iterables' as tuples of arguments."""
    star = len(iterables) > 1
    items: Iterator[Any] = zip(*iterables, strict=False) if star else iter(iterables[0])
    if chunksize == 1:
        for item in items:
            yield calls.Call(function, item if star else (item,))
        return
    runner = calls.run_chunk_async if asynchronous else calls.run_chunk
    while chunk := list(itertools.islice(items, chunksize)):
        yield calls.Call(runner, (function, chunk, star))


class MapResults:
    """What :meth:`Pool.map` returns: an async iterator of the values, and an async
    context manager that cancels the jobs left when its block is left."""

    def __init__(
        self,
        pool: Pool,
        function: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int,
        max_in_flight: int | None,
    ) -> None:
        check_map_arguments(chunksize, max_in_flight)
        if not iterables:
            msg = "map() needs at least one iterable"
            raise TypeError(msg)
        self._pool = pool
        self._ordered = ordered
        self._chunksize = chunksize
        self._limit = max_in_flight or 2 * pool.config.max_executors
        pool.call_payload(function, (), {})  # the checks, before anything is read
        self._payloads = payloads(
            function,
            iterables,
            chunksize,
            asynchronous=pool.config.entrypoint == calls.ASYNC_ENTRYPOINT,
        )
        self._exhausted = False
        self._closed = False
        # Unfinished jobs in the order they were sent; with ``ordered=False``, the
        # finished ones in the order they finished too.
        self._sent: collections.deque[JobHandle] = collections.deque()
        self._finished: collections.deque[JobHandle] = collections.deque()
        self._arrived: anyio.Event | None = None
        # values of the last chunk, not yet returned
        self._values: collections.deque[Any] = collections.deque()

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> MapResults:
        return self

    async def __anext__(self) -> Any:
        try:
            while not self._values:
                if self._closed:
                    raise StopAsyncIteration
                await self._fill()
                handle = await self._next_finished()
                if handle is None:
                    self._closed = True
                    raise StopAsyncIteration
                outcome = handle._outcome
                assert outcome is not None
                own = own_exception(outcome)
                if own is not None:
                    raise own from own.__cause__
                value = result_of(outcome)  # other failures raise here: see below
                self._values.extend(value if self._chunksize > 1 else (value,))
            return self._values.popleft()
        except StopAsyncIteration:
            raise
        except BaseException:
            self.cancel()
            raise

    async def _fill(self) -> None:
        """Send jobs until ``max_in_flight`` are unfinished or the items run out."""
        while not self._exhausted and len(self._sent) < self._limit:
            payload = next(self._payloads, None)
            if payload is None:
                self._exhausted = True
                return
            handle = await self._pool.submit(payload)
            self._sent.append(handle)
            if not self._ordered:
                handle._on_done = self._done_callback(handle)

    def _done_callback(self, handle: JobHandle) -> Callable[[JobOutcome], None]:
        def done(_: JobOutcome) -> None:
            self._finished.append(handle)
            if self._arrived is not None:
                self._arrived.set()
                self._arrived = None

        return done

    async def _next_finished(self) -> JobHandle | None:
        """The next job whose values come now (None: nothing left), once finished."""
        if self._ordered:
            if not self._sent:
                return None
            handle = self._sent[0]
            await handle.outcome()
            self._sent.popleft()
            return handle
        while not self._finished:
            if not self._sent:
                return None
            self._arrived = anyio.Event()
            await self._arrived.wait()
        handle = self._finished.popleft()
        self._sent.remove(handle)
        return handle

    # -- leaving -----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel every job sent and unfinished, and read no more items."""
        self._closed = True
        self._exhausted = True
        self._values.clear()
        sent, self._sent = self._sent, collections.deque()
        for handle in sent:
            if not handle.done():
                handle.cancel()

    async def aclose(self) -> None:
        """Leave early: the jobs left are cancelled (and not waited for)."""
        self.cancel()

    async def __aenter__(self) -> MapResults:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cancel()
