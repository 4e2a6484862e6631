"""The program every job's process runs: ``python -m executors_oneshot._runner``.

It reads one request on stdin, imports the entrypoint, runs the setup, then (for a job)
the entrypoint, writes one reply on its original stdout and exits at once. The two pipes
belong to it alone: the job's stdin reads from the null device and its stdout (prints,
``os.write(1, ...)``, child processes) goes to stderr, so nothing a job does can corrupt
the reply. See ``_protocol`` for the messages.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pickle
import sys
import threading
from typing import TYPE_CHECKING, Any

from executors import JobContext, RemoteError, resolve_callable

from ._protocol import HEADER, PROTOCOL, Reply, Request, frame

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

#: exit status when the host went away before the reply could be sent
_HOST_GONE = 1


def main() -> None:
    requests, replies = _take_pipes()
    data = _read_frame(requests)
    if data is None:  # the host went away before it sent the request
        os._exit(_HOST_GONE)
    watch = threading.Thread(
        target=_exit_when_host_goes, args=(requests,), name="oneshot-host-watch", daemon=True
    )
    watch.start()
    _send(replies, _serve(data))
    # The reply is out: the process has done its work. It ends here, without waiting for
    # threads the job left running and without running atexit handlers.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _take_pipes() -> tuple[int, int]:
    """Keep stdin and stdout for the request and the reply; give the job the null device
    and stderr instead. ``os.dup`` makes descriptors that child processes do not inherit."""
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return requests, replies


def _read_frame(fd: int) -> bytes | None:
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _exit_when_host_goes(fd: int) -> None:
    """The host never writes again and closes stdin only once this process has exited:
    end-of-file means the host died, so nobody is left to read the reply."""
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
    os._exit(_HOST_GONE)


def _send(fd: int, reply: Reply) -> None:
    view = memoryview(frame(reply))
    try:
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
    except OSError:  # the host is gone
        os._exit(_HOST_GONE)


def _serve(data: bytes) -> Reply:
    sys_path, label, request_data = pickle.loads(data)
    if sys_path is not None:
        # Import what the host imports (as multiprocessing's spawn does), so that the
        # entrypoint's module and the payload's classes resolve here as they do there.
        sys.path[:] = [*sys_path, *(entry for entry in sys.path if entry not in sys_path)]
    try:
        request: Request = pickle.loads(request_data)
    except Exception as exc:
        problem = pickle.UnpicklingError(
            f"the request for {label} cannot be unpickled in its process "
            f"(pid {os.getpid()}): {type(exc).__name__}: {exc}"
        )
        return _error(problem)
    loop = _Loop()
    try:
        return _run(request, label, loop)
    finally:
        loop.close()


class _Loop:
    """One event loop for the setup and the job, made (and asyncio imported: a tenth of
    a sync job's process) only if one of them is async."""

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None

    def run(self, awaitable: Any) -> object:
        if self._runner is None:
            import asyncio

            self._runner = asyncio.Runner()
        return self._runner.run(_awaited(awaitable))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


def _run(request: Request, label: str, runner: _Loop) -> Reply:
    try:
        entrypoint = resolve_callable(request["entrypoint"], what="entrypoint")
        setup_ref = request["setup"]
        setup = None if setup_ref is None else resolve_callable(setup_ref, what="setup")
    except Exception as exc:  # an EntrypointError names the reference and its problem
        return _error(exc)
    state = None
    if setup is not None:
        try:
            state = _call(runner, setup)
        except Exception as exc:
            exc.add_note(f"raised by setup {_name(setup_ref)} for {label} (pid {os.getpid()})")
            return _error(exc)
    if request["kind"] == "start":
        return ("ready",)
    ctx = JobContext(
        payload=request["payload"],
        job_id=request["job_id"],
        executor_id=request["executor_id"],
        state=state,
        metadata=request["metadata"],
    )
    # A SystemExit (sys.exit in the job) is not caught: the process ends with that
    # status and no reply, and the host reports the job CRASHED with the exit code.
    try:
        value = _call(runner, entrypoint, ctx)
    except Exception as exc:
        return _error(exc)
    try:
        return ("value", pickle.dumps(value, protocol=PROTOCOL))
    except Exception as exc:
        problem = pickle.PicklingError(
            f"the result of {label} cannot be pickled: {type(exc).__name__}: {exc}"
        )
        return _error(problem)


def _call(runner: _Loop, function: Callable[..., Any], *args: object) -> object:
    result = function(*args)
    if inspect.isawaitable(result):
        return runner.run(result)
    return result


async def _awaited(awaitable: Any) -> object:
    return await awaitable


def _error(exc: BaseException) -> Reply:
    remote = RemoteError.from_exception(exc)
    return ("error", remote.type_name, remote.message, remote.traceback, _pickled(exc))


def _pickled(exc: BaseException) -> bytes | None:
    """``exc`` pickled, or None when it does not survive the round trip (the host then
    shows it by its type name, message and traceback text)."""
    try:
        data = pickle.dumps(exc, protocol=PROTOCOL)
        pickle.loads(data)
    except Exception:
        return None
    return data


def _name(ref: object) -> str:
    return repr(ref) if isinstance(ref, str) else repr(getattr(ref, "__qualname__", ref))


if __name__ == "__main__":
    main()
