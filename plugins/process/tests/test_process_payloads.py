"""Large payloads: their buffers travel out of band (pickle protocol 5), and large frames
are received straight into buffers of their final size. Checked on the frames alone,
whatever the chunking, and through real workers."""

from __future__ import annotations

import os
import pickle
import platform
import random
import resource
import socket
import sys
import threading
from typing import Any

import anyio
import numpy as np
import pytest
from process_helpers import PATIENCE, config

from executors import open_pool
from executors_process._protocol import (
    COUNT,
    DIRECT,
    FLAG,
    HEADER,
    OUT_OF_BAND,
    SEND_BUFFER,
    FrameBuffer,
    Message,
    encode,
    send_all,
    unfilled,
)

MIB = 1 << 20


def _payloads() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    grid = rng.random((300, 200))
    return {
        "bytearray": bytearray(random.Random(1).randbytes(3 * MIB)),
        "PickleBuffer": pickle.PickleBuffer(bytearray(b"m" * (2 * MIB))),
        "bytes, in the pickle": b"b" * (DIRECT + 5),
        "numpy": rng.random((512, 300)),
        "numpy, not contiguous": grid[:, ::2],
        "many buffers": [bytearray([i]) * OUT_OF_BAND for i in range(20)],
        "small": {"a": 1, "b": bytearray(b"x" * 100)},
        "empty bytearray": bytearray(),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool((a == b).all())
    if isinstance(a, pickle.PickleBuffer):
        return bytes(a) == bytes(b)
    return bool(a == b)


def _stream(frame: bytes | list[Any]) -> bytes:
    parts = [frame] if isinstance(frame, bytes) else frame
    return b"".join(bytes(memoryview(p).cast("B")) for p in parts)


def _read(stream: bytes, chunks: random.Random) -> list[Message]:
    """The messages in ``stream``, read as a socket reader would: into ``pending()``
    where a large frame is open, else ``feed()``, in chunks of random sizes."""
    buffer, messages, at = FrameBuffer(), list[Message](), 0
    while at < len(stream):
        size = chunks.choice([1, 7, 4096, 65536, 1 << 22])
        target = buffer.pending()
        if target is not None:
            count = min(len(target), size, len(stream) - at)
            target[:count] = stream[at : at + count]
            messages += buffer.filled(count)
        else:
            count = min(size, len(stream) - at)
            messages += buffer.feed(stream[at : at + count])
        at += count
    assert buffer.pending() is None, "a frame was left open"
    return messages


@pytest.mark.parametrize("name", list(_payloads()))
def test_every_payload_arrives_whole_whatever_the_chunking(name: str) -> None:
    payload = _payloads()[name]
    frame = encode(("job", "j1", payload))
    stream = _stream(frame) + _stream(encode(("ping", 3)))  # and a frame after it
    for seed in range(3):
        messages = _read(stream, random.Random(seed))
        assert [m[0] for m in messages] == ["job", "ping"]
        assert _same(payload, messages[0][2]), f"{name} changed on the way (seed {seed})"


def test_large_buffers_go_out_of_band_and_small_ones_in_the_pickle() -> None:
    # numpy offers its buffer to pickle; bytes and bytearrays are wrapped to (a few
    # containers deep at most)
    array, large, small = np.zeros(OUT_OF_BAND // 8), bytes(OUT_OF_BAND), bytes(OUT_OF_BAND - 1)
    frame = encode(("job", "j", [array, large, small]))
    assert isinstance(frame, list)
    head, *buffers = frame
    assert len(buffers) == 2
    # the payload's own memory, no copy
    assert [memoryview(b).obj for b in buffers] == [array, large]
    (length,) = HEADER.unpack_from(head)
    assert length & FLAG
    assert COUNT.unpack_from(head, HEADER.size) == (2,)
    assert isinstance(encode(("job", "j", bytearray(OUT_OF_BAND - 1))), bytes)
    assert isinstance(encode(("job", "j", {"k": bytearray(OUT_OF_BAND)})), list)
    assert isinstance(encode(("job", "j", np.zeros(OUT_OF_BAND // 8))), list)


def test_a_corrupt_head_is_refused() -> None:
    for count in (0, 1 << 20):
        frame = HEADER.pack(10 | FLAG) + COUNT.pack(count) + bytes(64)
        with pytest.raises(ValueError, match="corrupt"):
            FrameBuffer().feed(frame)


def test_a_frame_sent_on_a_socket_is_received_into_its_buffers() -> None:
    payload = np.arange(4 * MIB // 8, dtype=np.int64)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=send_all, args=(ours, encode(("job", "j", payload))))
        sender.start()
        buffer, messages = FrameBuffer(), list[Message]()
        while not messages:
            target = buffer.pending()
            if target is not None:
                messages = buffer.filled(theirs.recv_into(target))
            else:
                messages = buffer.feed(theirs.recv(1 << 16))
        sender.join(PATIENCE)
        assert not sender.is_alive(), "the sender did not finish"
    assert np.array_equal(messages[0][2], payload)


def test_a_frame_that_does_not_unpickle_costs_only_itself() -> None:
    broken = bytearray(_stream(encode(("job", "j", bytearray(2 * MIB)))))
    # the pickle's last byte (STOP) changed: the frame is whole but does not unpickle
    (length,) = HEADER.unpack_from(broken)
    pickle_end = HEADER.size + COUNT.size + 8 + (length & ~FLAG)
    broken[pickle_end - 1] = ord("X")
    messages = _read(bytes(broken) + _stream(encode(("ping", 1))), random.Random(0))
    assert messages[0][0] == "undecodable"
    assert messages[1] == ("ping", 1)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["bytearray", "numpy", "bytes, in the pickle", "many buffers"])
async def test_large_payloads_round_trip_through_a_worker(name: str) -> None:
    payload = _payloads()[name]
    async with open_pool(config(entrypoint="process_jobs:echo")) as pool:
        with anyio.fail_after(PATIENCE):
            back = await pool.run(payload)
            assert _same(payload, back)
            assert await pool.run("small") == "small"  # the stream is still in step
        assert pool.statistics().executors_started == 1


@pytest.mark.anyio
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_mb tunes glibc's malloc")
@pytest.mark.parametrize(("keep_freed_mb", "kept"), [(256, True), (0, False)])
async def test_a_worker_receives_a_large_payload_into_memory_a_former_one_freed(
    keep_freed_mb: int, kept: bool
) -> None:
    # 64 MiB: over the 32 MiB above which glibc maps every block afresh by default.
    payload = bytearray(64 * MIB)
    pages = len(payload) // 4096
    cfg = config(
        entrypoint="process_jobs:faults_since_last_job",
        backend_options={"keep_freed_mb": keep_freed_mb},
    )
    async with open_pool(cfg) as pool:
        with anyio.fail_after(PATIENCE):
            faults = [await pool.run(payload) for _ in range(3)]
    # The first payload faults its pages in wherever it lands; each later one lands in
    # the memory the one before freed, or faults its pages in again.
    if kept:
        assert max(faults[1:]) < pages / 10, f"{faults} page faults for {pages} pages"
    else:
        assert min(faults[1:]) > pages / 2, f"{faults} page faults for {pages} pages"


def _send_buffer_granted() -> int:
    """The least send buffer a socket that asked for SEND_BUFFER has on this kernel."""
    try:
        with open("/proc/sys/net/core/wmem_max") as limit:
            return min(SEND_BUFFER, int(limit.read()))
    except OSError:
        pytest.skip("the kernel's send buffer limit is not readable here")


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_both_ends_of_a_job_socket_have_a_wide_send_buffer() -> None:
    granted = _send_buffer_granted()
    async with open_pool(config(entrypoint="process_jobs:send_buffers")) as pool:
        with anyio.fail_after(PATIENCE):
            worker_ends = await pool.run(None)
        (executor,) = pool._executors.values()
        host_end = executor._sock.getsockopt(  # type: ignore[attr-defined]
            socket.SOL_SOCKET, socket.SO_SNDBUF
        )
    assert host_end >= granted
    # the job socket widened, the control socket (pongs, log records) left as it is
    assert len(worker_ends) == 2
    assert max(worker_ends) >= granted, worker_ends


def test_keep_freed_mb_is_checked() -> None:
    from executors_process import ProcessOptions

    for wrong in (-1, 2048, 1.5):
        with pytest.raises((ValueError, TypeError), match="keep_freed_mb"):
            ProcessOptions(keep_freed_mb=wrong)  # type: ignore[arg-type]


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(part) for part in release.split(".")[:2] if part.isdigit())


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or sys.implementation.name != "cpython",
    reason="large receive buffers are mapped in ahead on CPython on Linux",
)
def test_a_large_receive_buffer_is_mapped_in_before_the_receive() -> None:
    if _kernel() < (5, 14):
        pytest.skip("MADV_POPULATE_WRITE needs Linux 5.14")
    size = 64 * MIB
    pages = size // 4096
    buffer = unfilled(size)
    assert type(buffer) is bytearray
    assert len(buffer) == size
    allocated = _faults()
    buffer[::4096] = b"\x01" * len(range(0, size, 4096))  # a byte on every page
    assert _faults() - allocated < pages / 10, "the receive would fault every page in"
    small = unfilled(100)
    assert type(small) is bytearray
    assert len(small) == 100
