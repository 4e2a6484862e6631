"""The large-payload part of ``bench.py``: an echo job (a payload in, the same payload
out) of 1, 10 and 100 MB through our process pool and ProcessPoolExecutor (2 workers,
a job in flight on each), and the socketpair floor: the same bytes sent to another
process and back over a bare socketpair to each of 2 processes, with no pickling,
received into buffers allocated once. Each side's figure is MB/s of payload per round
trip: the payload's size times the round trips, over the time they took. The sides take
turns, in blocks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import anyio
import psutil
from _report import highest_rss
from _sides import pool_config
from bench_jobs import identity

from executors import open_pool
from executors_process._protocol import SEND_BUFFER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from multiprocessing.context import ForkServerContext

    #: one round trip of a payload, awaited
    Echo = Callable[[bytearray], Awaitable[object]]

WORKERS = 2
MB = 1_000_000
#: payload sizes in MB, and how many round trips each side makes of each per block
SIZES = {1: 40, 10: 12, 100: 4}
QUICK_SIZES = {1: 2, 10: 1, 100: 1}
_LENGTH = struct.Struct("!Q")


@contextlib.asynccontextmanager
async def ours() -> AsyncIterator[Echo]:
    config = pool_config("process", WORKERS, entrypoint="bench_jobs:echo")
    async with open_pool(config) as pool:
        await pool.wait_until(lambda s: s.idle >= WORKERS)
        yield pool.run


@contextlib.asynccontextmanager
async def ppe(context: ForkServerContext) -> AsyncIterator[Echo]:
    with ProcessPoolExecutor(WORKERS, mp_context=context) as executor:

        async def call(payload: bytearray) -> object:
            return await asyncio.wrap_future(executor.submit(identity, payload))

        yield call


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    while view:
        received = sock.recv_into(view)
        if not received:
            raise EOFError
        view = view[received:]


def _echo_bytes(sock: socket.socket) -> None:
    """The floor's other process: reads a length and that many bytes into a buffer it
    keeps for that size, and sends them back."""
    header = bytearray(_LENGTH.size)
    buffers: dict[int, bytearray] = {}
    with contextlib.suppress(EOFError):
        while True:
            _recv_exactly(sock, memoryview(header))
            (size,) = _LENGTH.unpack(header)
            data = buffers.setdefault(size, bytearray(size))
            _recv_exactly(sock, memoryview(data))
            sock.sendall(header)
            sock.sendall(data)


@contextlib.asynccontextmanager
async def floor(context: ForkServerContext) -> AsyncIterator[Echo]:
    """A bare socketpair to each of WORKERS other processes, a round trip at a time on
    each, driven from threads: blocking sends, and receives into buffers allocated once
    for each size on both ends (the fewest copies and page faults Python allows: the
    machine's limit, not a pool's)."""
    free: list[tuple[socket.socket, dict[int, bytearray]]] = []
    processes = []
    for _ in range(WORKERS):
        ours_end, theirs = socket.socketpair()
        for end in (ours_end, theirs):  # as large as our pool's job sockets ask for
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        process = context.Process(target=_echo_bytes, args=(theirs,))
        process.start()
        theirs.close()
        free.append((ours_end, {}))
        processes.append(process)
    ends = [sock for sock, _ in free]

    def round_trip(
        sock: socket.socket, buffers: dict[int, bytearray], payload: bytearray
    ) -> bytearray:
        sock.sendall(_LENGTH.pack(len(payload)))
        sock.sendall(payload)
        header = bytearray(_LENGTH.size)
        _recv_exactly(sock, memoryview(header))
        (size,) = _LENGTH.unpack(header)
        back = buffers.setdefault(size, bytearray(size))
        _recv_exactly(sock, memoryview(back))
        return back

    async def call(payload: bytearray) -> object:
        sock, buffers = free.pop()  # the harness keeps at most WORKERS in flight
        try:
            return await anyio.to_thread.run_sync(round_trip, sock, buffers, payload)
        finally:
            free.append((sock, buffers))

    try:
        yield call
    finally:
        for sock in ends:
            sock.close()
        for process in processes:
            process.join()


async def _rate(call: Echo, payload: bytearray, trips: int, in_flight: int) -> float:
    """Seconds for ``trips`` round trips of ``payload``, ``in_flight`` at a time."""
    queue = list(range(trips))

    async def worker() -> None:
        while queue:
            queue.pop()
            back: Any = await call(payload)
            assert len(back) == len(payload)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)
    return time.perf_counter() - began


async def peak_rss(call: Echo, size: int) -> float:
    """The host's highest RSS during one round trip of a ``size``-byte payload, above
    its RSS before the payload was made, as a multiple of ``size`` (sampled every
    millisecond by a thread)."""
    base = psutil.Process().memory_info().rss
    payload = bytearray(size)
    with highest_rss(0.001) as highest:
        back: Any = await call(payload)
        assert len(back) == size
        del back
    return (highest() - base) / size


async def section(context: ForkServerContext, quick: bool, blocks: int) -> dict[str, Any]:
    """MB/s of payload per round trip for each side and size; our pool's peak host RSS
    in a 100 MB round trip."""
    print("large payloads ...", file=sys.stderr)
    sizes = QUICK_SIZES if quick else SIZES
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        sides = {
            "process pool": (await stack.enter_async_context(ours()), WORKERS),
            "ProcessPoolExecutor": (await stack.enter_async_context(ppe(context)), WORKERS),
            "socketpair floor": (await stack.enter_async_context(floor(context)), WORKERS),
        }
        for size_mb, trips in sizes.items():
            payload = bytearray(b"\x5a" * (size_mb * MB))
            seconds = dict.fromkeys(sides, 0.0)
            for call, in_flight in sides.values():  # warm-up: one of each
                await _rate(call, payload, in_flight, in_flight)
            for _ in range(blocks):
                for name, (call, in_flight) in sides.items():
                    seconds[name] += await _rate(call, payload, trips, in_flight)
            results[f"{size_mb} MB"] = {
                name: size_mb * trips * blocks / spent for name, spent in seconds.items()
            }
        del payload
        results["peak_rss_100_mb"] = await peak_rss(sides["process pool"][0], 100 * MB)
    return results
