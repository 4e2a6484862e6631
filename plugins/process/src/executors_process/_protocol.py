"""Frames between the host and a worker: a 4-byte big-endian length, then a pickle.

Large buffers travel out of band (pickle protocol 5): a ``bytearray``, a
``memoryview``, a numpy array, anything that offers a ``PickleBuffer`` of at least
``OUT_OF_BAND`` bytes is sent as it lies in memory, after the pickle, with no copy into
it; and the receiver reads it straight into a buffer of its own size. Such a frame sets
the length's top bit and follows it with the buffers' count and sizes::

    !I pickle length | FLAG, !I count, count x !Q size, pickle, buffer, buffer...

A frame of ``DIRECT`` bytes or more is read the same way, into buffers allocated once at
their final size (``FrameBuffer.pending``), never gathered piece by piece.

Imported by the worker, so it imports only the standard library and the core's job
model (``executors.RemoteError``, which the worker's ``JobContext`` imports anyway).
Every message is a tuple whose first item names it:

host -> worker: ("init", entrypoint, setup, executor_id, log_level) | ("job", job_id, payload)
                | ("ping", seq) | ("shutdown",)
worker -> host: ("ready",) | ("init_failed", error)
                | ("result", job_id, ok, value_or_error, logged)
                | ("pong", seq) | ("log", record_dict) | ("undecodable_in_worker", error)

A frame that does not unpickle is read as ``("undecodable", error)``; the worker sends
that on as ``undecodable_in_worker``, and the host fails the job it belonged to.

``error`` is ``(type_name, message, traceback_text, pickled_exception_or_None)``: the
fields of :class:`executors.RemoteError`, and the exception itself where it pickles.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any

from executors import RemoteError

if TYPE_CHECKING:
    from collections.abc import Callable

HEADER = struct.Struct("!I")
COUNT = struct.Struct("!I")
SIZE = struct.Struct("!Q")
#: the length's top bit: buffers follow the pickle
FLAG = 1 << 31
#: frames above this are refused: a corrupt length must not make us allocate gigabytes
MAX_FRAME = 1 << 30
#: a buffer this large or larger is sent out of band
OUT_OF_BAND = 1 << 16
#: a frame this large or larger is received straight into its own buffers
DIRECT = 1 << 20
#: buffers a frame may carry
MAX_BUFFERS = 1 << 16
#: the send buffer asked for on each end of a job socket (the kernel caps it at its
#: net.core.wmem_max): a large frame then crosses in chunks of up to this size, not of
#: the default's 208 KiB, with five times fewer wake-ups of the reader
SEND_BUFFER = 1 << 20

Message = tuple[Any, ...]
ErrorInfo = tuple[str, str, str, bytes | None]
#: a frame as sent: one ``bytes``, or its head and out-of-band buffers
Frame = bytes | list[bytes | memoryview]


def encode(message: Message) -> Frame:
    """The frame for ``message``: ``bytes``, or where it holds large buffers, its head
    then the buffers themselves (``memoryview``s of the message's own memory, not to be
    changed until sent). Raises whatever pickling raises."""
    for item in message:  # on every job and reply: a type check an item, as a rule
        if type(item) in _HOLDERS and _large(item, 2):
            # large bytes and bytearrays, which pickle would copy in (it offers their
            # buffers to no callback): wrapped to go out of band
            message = tuple(_unpacked(item, 2) for item in message)
            break
    taker = _Taker()
    data = pickle.dumps(message, protocol=5, buffer_callback=taker)
    buffers = taker.buffers
    if len(data) > MAX_FRAME or (buffers and max(b.nbytes for b in buffers) > MAX_FRAME):
        msg = f"message of {len(data)} bytes is over the {MAX_FRAME}-byte frame limit"
        raise ValueError(msg)
    if not buffers:
        return HEADER.pack(len(data)) + data
    sizes = b"".join(SIZE.pack(b.nbytes) for b in buffers)
    return [HEADER.pack(len(data) | FLAG) + COUNT.pack(len(buffers)) + sizes + data, *buffers]


#: the types that are, or may hold, a large bytes or bytearray
_HOLDERS = frozenset({bytes, bytearray, list, tuple, dict})


class _Taker:
    """A ``buffer_callback`` that takes the large contiguous buffers out of band (into
    ``buffers``): false for those, true to leave a buffer in the pickle."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: the pickle copies it
            return True
        if raw.nbytes < OUT_OF_BAND:
            return True
        self.buffers.append(raw)
        return False


def _large(value: object, depth: int) -> bool:
    """Whether ``value`` is, or holds ``depth`` containers deep, a large ``bytes`` or
    ``bytearray``: a few type checks for the usual small message."""
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return len(value) >= OUT_OF_BAND  # type: ignore[arg-type]
    if depth and (kind is list or kind is tuple):
        return any(_large(item, depth - 1) for item in value)  # type: ignore[attr-defined]
    if depth and kind is dict:
        return any(_large(item, depth - 1) for item in value.values())  # type: ignore[attr-defined]
    return False


def _unpacked(value: object, depth: int) -> object:
    """``value`` with its large ``bytes`` and ``bytearray``s wrapped to go out of band,
    looked for ``depth`` containers deep (lists, tuples, dicts)."""
    kind = type(value)
    if kind is bytes or kind is bytearray:
        return _Raw(value) if len(value) >= OUT_OF_BAND else value  # type: ignore[arg-type]
    if depth:
        if kind is list or kind is tuple:
            return kind(_unpacked(item, depth - 1) for item in value)  # type: ignore[attr-defined]
        if kind is dict:
            return {k: _unpacked(v, depth - 1) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


class _Raw:
    """A large ``bytes`` or ``bytearray``, pickled as a buffer."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        rebuild = _bytes if type(self.data) is bytes else _bytearray
        return rebuild, (pickle.PickleBuffer(self.data),)


def _bytes(buffer: Any) -> bytes:
    return bytes(buffer)


def _bytearray(buffer: Any) -> bytearray:
    # the receiver's own buffer, received for it: no copy
    return buffer if type(buffer) is bytearray else bytearray(buffer)


def widen(*socks: socket.socket) -> None:
    """Asks for a ``SEND_BUFFER`` send buffer on each of ``socks``. Only what is in
    flight takes memory; a kernel that refuses keeps its default, which works, slower."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def send_all(sock: Any, frame: Frame) -> None:
    """Sends ``frame`` on a blocking socket, its buffers as they are (no copy)."""
    if isinstance(frame, bytes):
        sock.sendall(frame)
        return
    for part in frame:
        sock.sendall(part)


class FrameBuffer:
    """Turns received bytes into messages, whatever the chunking.

    Small frames are fed as they come (:meth:`feed`). Once the head of a large frame is
    in, :meth:`pending` names the memory the next bytes belong in: the reader receives
    straight into it (``recv_into``) and says how much came (:meth:`filled`).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: a large frame being received: its pickle and buffers, and where it is
        self._parts: list[bytearray] = []
        self._part = 0
        self._offset = 0

    def pending(self) -> memoryview | None:
        """Where the next bytes of a large frame go; None when no such frame is open."""
        if not self._parts:
            return None
        return memoryview(self._parts[self._part])[self._offset :]

    def filled(self, count: int) -> list[Message]:
        """``count`` bytes came into :meth:`pending`: the frame, once it is whole."""
        self._offset += count
        while self._part < len(self._parts) and self._offset == len(self._parts[self._part]):
            self._part += 1
            self._offset = 0
        if self._part < len(self._parts):
            return []
        data, *buffers = self._parts
        self._parts, self._part, self._offset = [], 0, 0
        return [_decode(data, buffers)]

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if self._parts:  # the rest of a large frame came this way after all
            messages: list[Message] = []
            view = memoryview(data)
            while view and self._parts:
                target = self.pending()
                assert target is not None
                count = min(len(target), len(view))
                target[:count] = view[:count]
                messages += self.filled(count)
                view = view[count:]
            return messages + (self.feed(view) if view else [])
        if not self._buffer and len(data) >= HEADER.size:
            # The usual case, one whole frame and nothing held back: no copy into the
            # buffer and out again.
            (size,) = HEADER.unpack_from(data)
            if len(data) == HEADER.size + size:
                return [_decode(memoryview(data)[HEADER.size :])]
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size & FLAG:
                head = self._head_of_buffers(size & ~FLAG)
                if head is None:
                    break
                messages += self._open(head)
                if self._parts:
                    break
                continue
            if size > MAX_FRAME:
                msg = f"frame of {size} bytes announced: the stream is corrupt"
                raise ValueError(msg)
            end = HEADER.size + size
            if size >= DIRECT and len(self._buffer) < end:
                messages += self._open((HEADER.size, [size]))
                break
            if len(self._buffer) < end:
                break
            frame = self._buffer[HEADER.size : end]
            del self._buffer[:end]
            messages.append(_decode(frame))
        return messages

    def _head_of_buffers(self, size: int) -> tuple[int, list[int]] | None:
        """The head of a frame with out-of-band buffers, once it is all in: its length,
        and the sizes of the pickle and of each buffer."""
        if len(self._buffer) < HEADER.size + COUNT.size:
            return None
        (count,) = COUNT.unpack_from(self._buffer, HEADER.size)
        if size > MAX_FRAME or not 0 < count <= MAX_BUFFERS:
            msg = f"frame of {size} bytes and {count} buffers announced: the stream is corrupt"
            raise ValueError(msg)
        head = HEADER.size + COUNT.size + count * SIZE.size
        if len(self._buffer) < head:
            return None
        sizes = [
            SIZE.unpack_from(self._buffer, HEADER.size + COUNT.size + i * SIZE.size)[0]
            for i in range(count)
        ]
        if any(s > MAX_FRAME for s in sizes):
            msg = f"a buffer of {max(sizes)} bytes announced: the stream is corrupt"
            raise ValueError(msg)
        return head, [size, *sizes]

    def _open(self, head: tuple[int, list[int]]) -> list[Message]:
        """Starts receiving a frame into buffers of its parts' sizes, with what of it
        has come already."""
        start, sizes = head
        rest = self._buffer[start:]
        self._buffer = bytearray()
        self._parts = [unfilled(size) for size in sizes]
        self._part = self._offset = 0
        # a part of size 0 is whole already
        messages = self.filled(0)
        return messages + (self.feed(rest) if rest else [])


def unfilled(size: int) -> bytearray:
    """A ``bytearray`` of ``size`` bytes to be received into, its memory not cleared
    first (CPython) and, from ``DIRECT`` bytes on Linux, its pages mapped in one call
    rather than one fault at a time as the receive reaches them.

    ``bytearray(size)`` writes zeros over all of it, one pass over the memory more, and
    that pass faults its pages in one by one, at about 1.6 µs for every 4 KiB on a
    virtual machine. A frame's buffers are read only once every byte of them has come."""
    global _new_bytearray
    if _new_bytearray is None:
        _new_bytearray = _bytearray_maker()
    return _new_bytearray(size)


#: madvise(): map the range's pages in, writable, now (Linux 5.14)
_MADV_POPULATE_WRITE = 23


def _bytearray_maker() -> Callable[[int], bytearray]:
    if sys.implementation.name != "cpython":
        return bytearray
    import ctypes  # only once a large frame comes: a worker that gets none never imports it
    import mmap

    make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    make.restype = ctypes.py_object
    make.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    madvise = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            madvise = ctypes.CDLL(None).madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE

    def new(size: int) -> bytearray:
        buffer: bytearray = make(None, size)
        if madvise is not None and size >= DIRECT:
            # Whole pages only: the first and last may hold other objects. An older
            # kernel refuses the advice (EINVAL): the pages then fault in as before.
            address = ctypes.addressof((ctypes.c_char * size).from_buffer(buffer))
            start = -(-address // page) * page
            end = (address + size) // page * page
            madvise(start, end - start, _MADV_POPULATE_WRITE)
        return buffer

    return new


_new_bytearray: Callable[[int], bytearray] | None = None


def _decode(
    frame: bytes | bytearray | memoryview, buffers: list[bytearray] | None = None
) -> Message:
    try:
        message: Message = pickle.loads(frame, buffers=buffers)
    except Exception as exc:
        # A whole frame that does not unpickle on this side (a payload or result whose
        # class cannot be rebuilt here) costs that message only, never the reader: the
        # stream stays in step.
        return ("undecodable", error_info(exc))
    return message


def error_info(exc: BaseException) -> ErrorInfo:
    """``exc`` as data: the fields of its :class:`RemoteError` (type name, message,
    traceback text), and the exception itself if it pickles."""
    remote = RemoteError.from_exception(exc)
    return (remote.type_name, remote.message, remote.traceback, _pickled(exc))


def _pickled(exc: BaseException) -> bytes | None:
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception that pickles but does not unpickle is no use
    except Exception:
        return None
    return data
