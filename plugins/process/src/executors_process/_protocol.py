"""Frames between the host and a worker: a 4-byte big-endian length, then a pickle.

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

import pickle
import struct
from typing import Any

from executors import RemoteError

HEADER = struct.Struct("!I")
#: frames above this are refused: a corrupt length must not make us allocate gigabytes
MAX_FRAME = 1 << 30

Message = tuple[Any, ...]
ErrorInfo = tuple[str, str, str, bytes | None]


def encode(message: Message) -> bytes:
    """The frame for ``message``. Raises whatever pickling raises."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_FRAME:
        msg = f"message of {len(data)} bytes is over the {MAX_FRAME}-byte frame limit"
        raise ValueError(msg)
    return HEADER.pack(len(data)) + data


class FrameBuffer:
    """Turns received bytes into messages, whatever the chunking."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
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
            if size > MAX_FRAME:
                msg = f"frame of {size} bytes announced: the stream is corrupt"
                raise ValueError(msg)
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            frame = self._buffer[HEADER.size : end]
            del self._buffer[:end]
            messages.append(_decode(frame))
        return messages


def _decode(frame: bytes | bytearray | memoryview) -> Message:
    try:
        message: Message = pickle.loads(frame)
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
