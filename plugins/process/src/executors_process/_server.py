"""The process backend's fork server (Linux): a process that the host starts once, which
imports the worker module and the modules of each pool's entrypoint and setup, and
forks every new worker on request.

``multiprocessing``'s forkserver did this job before. Each worker it started cost the
host a new connection to the server, the preparation data and the whole ``Process``
object pickled, and the child their unpickling and ``multiprocessing``'s bootstrap: per
worker, about 1 ms more CPU in the host and 1 ms more in the child than here (see
docs/process.md, "Start methods"). Here the host sends one message on a connection it
keeps, and the child runs the worker at once. The server is the host's alone: its
preloads grow with each pool's modules, and nothing else shares it.

The protocol, on ``SOCK_SEQPACKET`` Unix sockets (message boundaries kept):

- **the line**, the host's connection to the server, carries pickled messages:
  ``("hello", shared, modules, main)`` first, then ``("prepare", shared)`` whenever the
  host's part of a worker's preparation changes (its ``sys.path``, ``sys.argv``,
  working directory: the server applies it to itself, and every worker inherits it),
  ``("preload", modules, main)`` for each pool's new modules, and ``("fork", own,
  executor_id, keep_freed_mb)``, where ``own`` is the worker's own part (its name, the
  host's main module). A fork request comes with three descriptors: the reply socket,
  and the worker's ends of its job and control sockets. A message that pickles larger
  than a packet goes as ``("part", bytes)`` packets, then ``("joined",)``. The server
  exits when the line closes: the host has exited (the workers it forked then die with
  it: they asked the kernel for that, see ``_worker``).
- **a reply socket**, one per worker: the server sends the worker's pid (or minus the
  errno if it could not fork), then its exit code once it has exited and been reaped
  (negative: the signal that killed it). The host watches it as the worker's sentinel.

The module is imported by the server first, so it imports little at its top.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

#: the worker's pid, or minus the errno of a failed fork
_PID = struct.Struct("q")
#: the worker's exit code, negative for the signal that killed it
_STATUS = struct.Struct("i")
#: the largest packet on the line: a message that pickles larger (the host's sys.path
#: and argv, when they are long) goes as parts of this size, then a "joined" packet
_PACKET = 1 << 15
#: what the server reads of a packet (a part, with its pickling)
_MAX_PACKET = 1 << 16
#: the keys of a worker's preparation that are its own (see preparation()); the rest is
#: the host's, which the server takes on itself when it changes
_OWN_KEYS = frozenset({"name", "init_main_from_name", "init_main_from_path"})
#: the descriptors that come with a fork request
_FORK_FDS = 3


class ServerGone(OSError):
    """The fork server exited before it answered a request."""


def _packet(sock: socket.socket, layout: struct.Struct, flags: int = 0) -> int | None:
    """One value of ``layout`` received from ``sock``; None once it closed."""
    data = sock.recv(layout.size, flags)
    if not data:
        return None
    value: int = layout.unpack(data)[0]
    return value


# -- the host's side -------------------------------------------------------------------------


def _send_message(
    line: socket.socket, message: tuple[object, ...], fds: Sequence[int] = ()
) -> None:
    """Sends ``message`` on the line, with ``fds``: one packet, or parts then a packet
    that joins them when it pickles larger than a packet."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    if len(data) > _PACKET:
        for start in range(0, len(data), _PACKET):
            part = ("part", data[start : start + _PACKET])
            line.sendmsg([pickle.dumps(part, pickle.HIGHEST_PROTOCOL)])
        data = pickle.dumps(("joined",), pickle.HIGHEST_PROTOCOL)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    line.sendmsg([data], rights)


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A worker's preparation as the host's part and the worker's own."""
    shared = {key: value for key, value in data.items() if key not in _OWN_KEYS}
    return shared, {key: value for key, value in data.items() if key in _OWN_KEYS}


def preparation(name: str) -> dict[str, Any]:
    """What ``multiprocessing.spawn.prepare()`` sets up in a new worker named ``name``:
    the host's ``sys.path``, ``sys.argv``, working directory, authentication key and
    main module, as ``spawn.get_preparation_data()`` gives them, but for the global start
    method, which the backend never reads (reading it would fix it for the host)."""
    import multiprocessing.process
    import multiprocessing.util

    original: str | None = getattr(multiprocessing.process, "ORIGINAL_DIR", None)
    sys_path = [original if entry == "" and original is not None else entry for entry in sys.path]
    data: dict[str, Any] = {
        "name": name,
        "authkey": bytes(multiprocessing.process.current_process().authkey),
        "log_to_stderr": multiprocessing.util._log_to_stderr,  # type: ignore[attr-defined]
        "sys_path": sys_path,
        "sys_argv": sys.argv,
        "orig_dir": original,
        "dir": os.getcwd(),
    }
    mp_logger = multiprocessing.util._logger  # type: ignore[attr-defined]
    if mp_logger is not None:
        data["log_level"] = mp_logger.getEffectiveLevel()
    main = sys.modules["__main__"]
    main_name = getattr(main.__spec__, "name", None)
    if main_name is not None:
        data["init_main_from_name"] = main_name
    elif (main_path := getattr(main, "__file__", None)) is not None:
        if not os.path.isabs(main_path) and original is not None:
            main_path = os.path.join(original, main_path)
        data["init_main_from_path"] = os.path.normpath(main_path)
    return data


class ForkServer:
    """The host's handle on its fork server: started by the first worker that needs it,
    started again if it has died, and shared by every pool of the interpreter (the
    requests of several threads and event loops are serialised by a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._line: socket.socket | None = None
        self._pid: int | None = None
        # the host that started it: a process forked from the host must not use the
        # line of its parent's server
        self._owner: int | None = None
        self._preloaded: set[str] = set()
        # the host's part of the preparation the server last had: sent again only when
        # it changes (a new sys.path, working directory...)
        self._shared: dict[str, Any] | None = None
        self._closes_at_exit = False
        # servers killed and not reaped yet (see _discard)
        self._dying: set[int] = set()

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (None before the first start)."""
        return self._pid

    def request_fork(
        self,
        name: str,
        executor_id: str,
        keep_freed_mb: int,
        fds: tuple[socket.socket, socket.socket],
        preload: list[str],
    ) -> socket.socket:
        """Asks the server to fork a worker that runs ``_worker.main`` on ``fds`` (its
        job and control sockets); the reply socket, on which the worker's pid comes
        (see :func:`forked`). Does not wait for the fork: only for the server's start,
        when this is the first request (a process start, not its imports)."""
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            shared, own = _split(preparation(name))
            request = ("fork", own, executor_id, keep_freed_mb)
            descriptors = [theirs.fileno(), *(sock.fileno() for sock in fds)]
            with self._lock:
                try:
                    self._send(request, descriptors, shared, own, preload)
                except OSError:
                    # The server died since its last request: start another, once.
                    self._discard()
                    self._send(request, descriptors, shared, own, preload)
        except BaseException:
            reply.close()
            raise
        finally:
            theirs.close()
        return reply

    def _send(
        self,
        request: tuple[object, ...],
        fds: list[int],
        shared: dict[str, Any],
        own: dict[str, Any],
        preload: list[str],
    ) -> None:
        line = self._running(shared, own, preload)
        _send_message(line, request, fds)

    def _running(
        self, shared: dict[str, Any], own: dict[str, Any], preload: list[str]
    ) -> socket.socket:
        """The line to a running server that has the host's ``shared`` preparation and
        has imported ``preload`` (with the host's main module as ``own`` names it)."""
        if self._owner != os.getpid():
            # Forked from the host: the line is the parent's, and so is the server.
            self._line = self._pid = self._shared = None
            self._preloaded = set()
            self._dying = set()
        if self._dying:
            _reap_dead(self._dying)
        if self._line is None or self._exited():
            self._stop()
            return self._start(shared, own, preload)
        if shared != self._shared:
            _send_message(self._line, ("prepare", shared))
            self._shared = shared
        if new := [module for module in preload if module not in self._preloaded]:
            _send_message(self._line, ("preload", new, own))
            self._preloaded.update(new)
        return self._line

    def _exited(self) -> bool:
        """Whether the server has exited (reaped now if it has)."""
        assert self._pid is not None
        try:
            pid, _ = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else's waitpid(-1)
            return True
        return pid != 0

    def _start(
        self, shared: dict[str, Any], own: dict[str, Any], preload: list[str]
    ) -> socket.socket:
        import atexit
        import multiprocessing.util
        import subprocess

        from executors.backend import register_helper_process

        line, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            command = f"from executors_process._server import serve; serve({theirs.fileno()})"
            flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
            args = [sys.executable, *flags, "-c", command]
            # multiprocessing's own way to start its forkserver: the one descriptor
            # passed, nothing else inherited, and no Popen object to reap at exit
            pid = multiprocessing.util.spawnv_passfds(
                os.fsencode(sys.executable), args, [theirs.fileno()]
            )
        except BaseException:
            line.close()
            raise
        finally:
            theirs.close()
        self._line, self._pid, self._owner = line, pid, os.getpid()
        register_helper_process(pid, [line.fileno()])
        if not self._closes_at_exit:
            # The line is closed as the interpreter exits (the server then ends), not
            # left to the collector, which would warn of an unclosed socket.
            atexit.register(self._stop)
            self._closes_at_exit = True
        _send_message(line, ("hello", shared, preload, own))
        self._shared, self._preloaded = shared, set(preload)
        return line

    def _discard(self) -> None:
        """Forget a server that failed a request, killed for sure, and reap it: it may
        not have exited yet (a SIGKILL takes a moment; its line is broken already), and
        left unreaped it would stay a zombie for the host's life. Reaped within
        ``_REAP_PATIENCE`` seconds as a rule; one that takes longer to die (stuck in the
        kernel) is reaped at a later request."""
        pid = self._pid
        self._stop()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            self._dying.add(pid)
            _reap_dead(self._dying, _REAP_PATIENCE)

    def _stop(self) -> None:
        """Forget the server (closing the line ends it, if it still runs)."""
        from executors.backend import forget_helper_process

        if self._line is not None:
            self._line.close()
        if self._pid is not None:
            forget_helper_process(self._pid)
        self._line = self._pid = self._shared = None
        self._preloaded = set()


#: the most seconds a request waits for a server it killed to die (see _discard)
_REAP_PATIENCE = 0.1


def _reap_dead(pids: set[int], patience: float = 0.0) -> None:
    """Reaps those of ``pids`` (killed servers) that have exited, and forgets them;
    first waits up to ``patience`` seconds for them to exit, on their pidfds (without
    pidfds, those still alive are reaped at a later call). Blocking: a server dies at
    once when killed, so this takes microseconds as a rule."""
    if patience:
        _wait_ended(pids, patience)
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            done = pid
        if done:
            pids.discard(pid)


def _wait_ended(pids: set[int], patience: float) -> None:
    """Returns once every process of ``pids`` has exited, or ``patience`` seconds on."""
    import time

    fds = [fd for pid in pids if (fd := _pidfd(pid)) is not None]
    try:
        deadline = time.monotonic() + patience
        alive = fds
        while alive and (left := deadline - time.monotonic()) > 0:
            ended, _, _ = select.select(alive, [], [], left)
            alive = [fd for fd in alive if fd not in ended]
    finally:
        _close(fds)


#: the host's fork server
SERVER = ForkServer()


async def _ended(reply: socket.socket) -> None:
    """The worker whose pid comes on ``reply`` (if it comes: the server may have failed
    to fork it, or died) is killed, and has ended."""
    import anyio

    await anyio.wait_readable(reply)
    try:
        pid = forked(reply)
    except OSError:
        return  # never forked
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    await anyio.wait_readable(reply)  # its exit code, or the server's end


def forked(reply: socket.socket) -> int:
    """The pid the server sent on ``reply`` (readable); raises OSError, with the
    server's errno, when the fork failed."""
    pid = _packet(reply, _PID)
    if pid is None:
        msg = "the fork server exited before it forked the worker"
        raise ServerGone(msg)
    if pid < 0:
        raise OSError(-pid, os.strerror(-pid))
    return pid


class ServedProcess:
    """One worker forked by the server: the part of ``multiprocessing.Process`` that the
    executor uses (``pid``, ``sentinel``, ``join``, ``exitcode``, ``close``), started
    with ``start_async``."""

    def __init__(
        self,
        server: ForkServer,
        preload: list[str],
        args: tuple[socket.socket, socket.socket, str, int],
        name: str,
    ) -> None:
        self._server = server
        self._preload = preload
        self._args = args
        self.name = name
        self.pid: int | None = None
        self.exitcode: int | None = None
        self._reply: socket.socket | None = None
        self._exit_fd: int | None = None

    async def start_async(self, give_up_after: float) -> None:
        """Starts the worker without blocking the event loop: the request is sent at
        once, and the pid awaited.

        Cancelled meanwhile (the pool's initialize_timeout, a drain: the server may be
        slow, importing a pool's module), it leaves nothing behind: it waits up to
        ``give_up_after`` more seconds for the pid, then kills the worker and waits for
        its end. A worker forked later still is killed by the server, which cannot hand
        its pid over to a closed reply socket."""
        import anyio

        sock, control, executor_id, keep_freed_mb = self._args
        reply = self._server.request_fork(
            self.name, executor_id, keep_freed_mb, (sock, control), self._preload
        )
        try:
            await anyio.wait_readable(reply)
            self.pid = forked(reply)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(give_up_after):
                await _ended(reply)
            reply.close()
            raise
        self._reply = reply
        # The host's own watch on the worker: the server reports its exit, unless the
        # server is stuck (importing a module that never finishes) or stopped, and a
        # pool must still see its worker go. None where the kernel has no pidfds, or
        # where the worker is gone (reaped by the server) already: its exit code is
        # then on the reply socket, or coming.
        self._exit_fd = _pidfd(self.pid)

    @property
    def sentinel(self) -> int:
        """Readable once the worker has exited (the server sends its exit code)."""
        assert self._reply is not None, "not started"
        return self._reply.fileno()

    async def ended(self) -> None:
        """Returns once the worker has exited, and its exit code has come from the
        server (or did not come within ``EXIT_REPORT_GRACE`` seconds: :meth:`join` then
        reads it from ``/proc``)."""
        import anyio

        if self._exit_fd is not None:
            await anyio.wait_readable(self._exit_fd)
            with anyio.move_on_after(EXIT_REPORT_GRACE):
                await anyio.wait_readable(self.sentinel)
        else:
            await anyio.wait_readable(self.sentinel)

    def join(self) -> None:
        """Takes the exit code; call once :meth:`ended` has returned."""
        if self.exitcode is not None or self._reply is None:
            return
        try:
            code = _packet(self._reply, _STATUS, socket.MSG_DONTWAIT)
        except BlockingIOError:
            # The server is alive but has not reported (see ended()): the worker, a
            # zombie until the server reaps it, still shows its status in /proc.
            self.exitcode = _zombie_exit_code(self.pid)
            return
        # None: the server died before it could report. Its workers die with it, killed
        # by the kernel with SIGKILL (the parent-death signal they asked for).
        self.exitcode = -signal.SIGKILL if code is None else code

    def close(self) -> None:
        if self._reply is not None:
            self._reply.close()
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self._exit_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._exit_fd)
            self._exit_fd = None

    def __del__(self) -> None:
        # An executor dropped without its close (a broken backend's wrapper, a host
        # that gave up on it): the pidfd goes with it, as its sockets do.
        self._close_pidfd()


#: seconds the host waits, once a worker has exited, for the server to report its exit
#: code (it does within a millisecond, unless it is stuck or stopped)
EXIT_REPORT_GRACE = 2.0


def _zombie_exit_code(pid: int | None) -> int | None:
    """The exit code of ``pid``, a worker that has exited but is not reaped yet (field
    52 of ``/proc/PID/stat``, Linux 3.5); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        # the fields after the command's closing parenthesis start at the third
        return os.waitstatus_to_exitcode(int(fields[52 - 3]))
    except (OSError, IndexError, ValueError):
        return None


class ServerContext:
    """Makes the workers of one pool, as a ``multiprocessing`` context would: each
    forked by the host's server, which imports ``preload`` first."""

    def __init__(self, preload: list[str], server: ForkServer = SERVER) -> None:
        self._preload = preload
        self._server = server

    def Process(
        self,
        target: Callable[..., object],
        args: tuple[socket.socket, socket.socket, str, int],
        name: str,
        daemon: bool,
    ) -> ServedProcess:
        from . import _worker

        assert target is _worker.main, "the server runs workers only"
        return ServedProcess(self._server, self._preload, args, name)


# -- the server's side -----------------------------------------------------------------------


#: True in the fork server itself (not in the workers it forks)
SERVING = False


def serve(fd: int) -> None:
    """The server's main loop, on the line ``fd``: returns once the host has gone."""
    global SERVING
    import warnings

    from . import _worker

    SERVING = True
    line = socket.socket(fileno=fd)
    # A module preloaded for a pool may start a thread; the server forks all the same,
    # as multiprocessing's did (a warning turned into an error would end it).
    warnings.filterwarnings("ignore", r".*multi-threaded.*fork", DeprecationWarning)
    # Ctrl-C in a terminal, and `kill -TERM -PGID`, reach every process of the group:
    # the server rides them out with the workers' own handlers (the host decides what
    # happens to them, and it would be left with no server), which the workers it forks
    # then keep (_worker.main(shielded=True)).
    _worker.shield_from_group_signals()
    # No worker reads the host's terminal.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # Workers: pid -> (the reply descriptor the host reads, and a descriptor that is
    # readable once the worker has exited: a pidfd, where the kernel has them).
    # Descriptors, not socket objects: a new worker closes those of the others without
    # touching (and so copying the pages of) any object.
    workers: dict[int, tuple[int, int | None]] = {}
    parts: list[bytes] = []
    poller = select.poll()
    poller.register(line, select.POLLIN)
    exits: dict[int, int] = {}  # pidfd -> pid
    while True:
        # Without pidfds, exits are looked for every _REAP_EVERY seconds.
        timeout = None if len(exits) == len(workers) else _REAP_EVERY * 1000
        ready = poller.poll(timeout)
        if not ready:  # a look for the exits no pidfd announces
            _reap(
                [pid for pid, (_, exited) in workers.items() if exited is None],
                workers,
                exits,
                poller,
            )
        elif ended := [exits[fd] for fd, _ in ready if fd in exits]:
            _reap(ended, workers, exits, poller)
        if not any(fd == line.fileno() for fd, _ in ready):
            continue
        request, fds = _receive(line, parts)
        if request is None:
            line.close()
            return
        kind = request[0]
        if kind == "fork":
            _fork(request, fds, workers, exits, poller, line)
        elif kind == "prepare":
            _take_on(request[1])
        elif kind == "preload":
            _preload(request[1], request[2])
        elif kind == "hello":
            _take_on(request[1])
            _first_preload()
            _preload(request[2], request[3])
        if kind in ("hello", "preload"):
            # What the imports left: collected, and the rest set apart from the
            # collector (the recipe of gc.freeze's documentation for a process that
            # forks), so that no collection in a worker touches, and copies, the pages
            # of the objects it inherited.
            gc.collect()
            gc.freeze()


def _receive(line: socket.socket, parts: list[bytes]) -> tuple[tuple[Any, ...] | None, list[int]]:
    """The next message and its descriptors, once its parts (if any) are joined; None
    once the host has gone."""
    while True:
        fds = array.array("i")
        try:
            data, ancillary, flags, _ = line.recvmsg(
                _MAX_PACKET, socket.CMSG_SPACE(_FORK_FDS * fds.itemsize)
            )
        except ConnectionError:
            return None, []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        received = list(fds)
        if not data:
            _close(received)
            return None, []
        message: tuple[Any, ...] | None = None
        if not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            with contextlib.suppress(Exception):
                message = pickle.loads(data)
                if message[0] == "part":
                    parts.append(message[1])
                    continue
                if message[0] == "joined":
                    joined = b"".join(parts)
                    parts.clear()
                    message = pickle.loads(joined)
        if message is None:
            # Never sent so by the host: dropped, and a fork request's reply socket
            # closes, which the host reads as the server's failure.
            parts.clear()
            _close(received)
            return ("dropped",), []
        return message, received


#: the host's part of the workers' preparation (its sys.path, argv, working directory,
#: key), as it last sent it; whether the server could take it on itself
_shared: dict[str, Any] = {}
_taken_on = False


def _take_on(shared: dict[str, Any]) -> None:
    """Applies the host's part of the preparation to the server itself: every worker
    forked after inherits it, and prepares only its own part (its name, its main
    module). Where it cannot (a working directory that is gone, say), each worker
    applies it again, and fails its start with the error, as multiprocessing's would."""
    global _shared, _taken_on
    import multiprocessing.spawn

    _shared = shared
    try:
        multiprocessing.spawn.prepare(shared)
    except Exception:
        _taken_on = False
    else:
        _taken_on = True


def _first_preload() -> None:
    """What every worker runs before its target (spawn.prepare, which _take_on imported,
    with its fix-ups of the main module, deferred: see _forkserver), and what it would
    make as it starts."""
    from . import _forkserver, _worker

    _forkserver.run_the_main_module_on_demand()
    _worker.prepare_forks()


def _preload(modules: list[str], main: dict[str, Any]) -> None:
    """Imports ``modules`` (the worker module, those of each pool's entrypoint and
    setup), through the host's ``sys.path``; the host's main module, as ``main`` names
    it, for ``"__main__"``. One that fails is left to the workers, which import it again
    and report the error as their start's."""
    import importlib

    for module in modules:
        try:
            if module == "__main__":
                _preload_main(main)
            else:
                importlib.import_module(module)
        except BaseException:  # a worker imports it again, and says why
            pass


def _preload_main(main: dict[str, Any]) -> None:
    """The host's main module, named in an entrypoint (``"__main__:handle"``): run here
    once as ``__mp_main__``, so that no worker runs it again."""
    import multiprocessing.process
    import multiprocessing.spawn

    process = multiprocessing.process.current_process()
    process._inheriting = True  # type: ignore[attr-defined]
    try:
        if "init_main_from_path" in main:
            multiprocessing.spawn.import_main_path(main["init_main_from_path"])
    finally:
        del process._inheriting  # type: ignore[attr-defined]


def _close(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _fork(
    request: tuple[Any, ...],
    fds: list[int],
    workers: dict[int, tuple[int, int | None]],
    exits: dict[int, int],
    poller: select.poll,
    line: socket.socket,
) -> None:
    _, data, executor_id, keep_freed_mb = request
    if len(fds) != _FORK_FDS:  # never sent so: the host's request is broken
        _close(fds)
        return
    reply, job, control = fds
    if not _taken_on:
        data = {**_shared, **data}
    gc.freeze()  # what the server made since, too (cheap: no collection)
    try:
        pid = os.fork()
    except OSError as exc:
        with contextlib.suppress(OSError):  # the host closed it: nobody reads
            os.write(reply, _PID.pack(-(exc.errno or 0)))
        _close(fds)
        return
    if pid == 0:
        global SERVING
        SERVING = False
        # The line stays an object of the server's frame, never used or collected
        # here: its descriptor is closed, as are every other worker's.
        others = [line.fileno(), reply]
        others += [fd for pair in workers.values() for fd in pair if fd is not None]
        os._exit(_run_worker(data, executor_id, keep_freed_mb, job, control, others))
    _close((job, control))
    exited = _pidfd(pid)
    workers[pid] = (reply, exited)
    if exited is not None:
        exits[exited] = pid
        poller.register(exited, select.POLLIN)
    try:
        os.write(reply, _PID.pack(pid))
    except OSError:
        # The host gave the start up (its reply socket is closed): nobody will ever
        # run a job on this worker, which would exit on its own closed sockets.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


#: seconds between looks for exited workers where the kernel gives no pidfd (Linux
#: before 5.3): how late an exit may be reported at most
_REAP_EVERY = 0.05


def _pidfd(pid: int) -> int | None:
    """A descriptor readable once ``pid`` has exited; None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _reap(
    pids: list[int],
    workers: dict[int, tuple[int, int | None]],
    exits: dict[int, int],
    poller: select.poll,
) -> None:
    """Reports the exit code of each worker of ``pids`` that has exited, and forgets it
    (each by its pid: the server waits for no process but its workers)."""
    for pid in pids:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # gone already: nothing to report but its end
            done, status = pid, 9  # killed by SIGKILL, as far as anyone can tell
        if done == 0:
            continue
        reply, exited = workers.pop(pid, (None, None))
        if exited is not None:
            del exits[exited]
            poller.unregister(exited)
            os.close(exited)
        if reply is not None:
            with contextlib.suppress(OSError):  # the host closed it: nobody reads
                os.write(reply, _STATUS.pack(os.waitstatus_to_exitcode(status)))
            os.close(reply)


def _run_worker(
    data: dict[str, Any],
    executor_id: str,
    keep_freed_mb: int,
    job: int,
    control: int,
    others: list[int],
) -> int:
    """In the new child: drops what is the server's, prepares as ``multiprocessing``
    would, and runs the worker; its exit code. It keeps the SIGINT and SIGTERM handlers
    the server set, the worker's own (see serve)."""
    code = 1
    try:
        _close(others)
        import multiprocessing.spawn

        from . import _worker

        # The host's name for it (and path, argv, directory, key, unless the server
        # took them on); its main module deferred until a job needs a name from it
        # (see _forkserver).
        multiprocessing.spawn.prepare(data)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, job)
        side = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, control)
        _worker.main(sock, side, executor_id, keep_freed_mb, shielded=True)
        code = 0
    except (BrokenPipeError, ConnectionResetError):
        code = 0  # the host is gone (it gave this worker up): nobody to tell
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
    return code
