"""What the host and a job's process say to each other: one request, one reply.

Imported by both sides, so it imports only the standard library.

The host writes one frame to the process's stdin, and the process writes one frame
back on its original stdout (the job's own prints go to stderr). A frame is a 4-byte
big-endian length, then a pickle. Every frame is an envelope of plain values (strings,
bytes, lists); the user's objects inside it (entrypoint, payload, value, exception) are
pickled on their own, so that one that does not unpickle on the other side becomes a
precise error instead of an unreadable message.

host -> process: ``(sys_path, label, request)``
    ``sys_path``: the host's import path, put first in the process's (or None);
    ``label``: what the request is for, for error messages ("job pool1-3");
    ``request``: a pickled :class:`Request`.

process -> host, one of:
    ``("ready",)``: the start check imported the entrypoint and ran the setup;
    ``("value", pickled_value)``: the job returned;
    ``("error", type_name, message, traceback_text, pickled_exception_or_None)``:
    the setup or the job raised, or a request or value did not (un)pickle.

The process keeps its stdin open and exits when it reads end-of-file there: the host is
gone, and nobody will read its reply.
"""

from __future__ import annotations

import pickle
import struct
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from collections.abc import Callable

#: the module each job's process runs: ``python -m executors_oneshot._runner``
RUNNER = "executors_oneshot._runner"
HEADER = struct.Struct("!I")
PROTOCOL = pickle.HIGHEST_PROTOCOL

Reply = tuple[Any, ...]
#: ``(type_name, message, traceback_text, pickled_exception_or_None)``
ErrorFields = tuple[str, str, str, bytes | None]


class Request(TypedDict):
    """What one process is asked to do."""

    #: "start": import the entrypoint and run the setup, to check them; "job": run a job
    kind: Literal["start", "job"]
    #: "module:function" or a callable (pickled by reference)
    entrypoint: str | Callable[..., Any]
    setup: str | Callable[..., Any] | None
    executor_id: str
    job_id: str
    payload: object
    metadata: dict[str, str]


def frame(message: object) -> bytes:
    """``message`` pickled, with its length in front."""
    data = pickle.dumps(message, protocol=PROTOCOL)
    return HEADER.pack(len(data)) + data
