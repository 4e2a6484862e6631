"""Preloaded by the multiprocessing forkserver that the process backend's workers fork
from; imported anywhere else, it does nothing.

A SIGTERM sent to a whole process group (``kill -TERM -PGID``; some service managers
signal every process of a service) reaches the forkserver too. Its default action would
end the forkserver, and the workers it forked would die with it (they ask the kernel to
kill them when their parent dies). So the forkserver shields itself with a handler that
does nothing, and every process it forks starts again with the default action for
SIGTERM: other users of the same forkserver see no change, and the process backend's
workers shield themselves (``_worker.shield_from_group_signals``). The forkserver still
exits when the host does: it watches the host through a pipe, not through signals.

It also imports, once, the modules that every new worker would otherwise import as it
starts (``multiprocessing`` imports them lazily in each child, and ``runpy`` does when
the child runs the main module): a worker then starts in about a third less CPU.

And a worker of the process backend does not run the host's main module as it starts,
as ``multiprocessing`` would for every child: it runs it the first time something needs
a name from it (a function or class of the script, pickled by reference, or code that
looks it up). Until then ``__main__`` is a stand-in module (:class:`_MainOnDemand`).
Re-running the script's top level (compiling it, its imports, its globals) cost each
start about a millisecond for an empty script and more for a real one, and a worker
rarely needs it. Other children of the same forkserver are left as they were.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.spawn
import os
import signal
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

#: the name of every worker process of the process backend starts with this
WORKER_NAME_PREFIX = "executors-worker-"


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing. Unlike ``SIG_IGN``, a handler is not inherited by
    programs that a process runs, which start with the default action."""


def _restore_default() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _forkserver_main() -> FrameType | None:
    """The frame of the forkserver's ``main()`` if it is importing this module (as a
    preload), else None."""
    # Not imported here: the backend's own fork server imports this module too, and
    # multiprocessing.forkserver's imports (tempfile, random and theirs) would cost each
    # of its forks (random, for one, reseeds in every child).
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:  # not in multiprocessing's forkserver, which imported it
        return None
    main = forkserver.main.__code__
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is main:
            return frame
        frame = frame.f_back
    return None


def _take_the_hosts_path(main: FrameType) -> None:
    """The host hands the forkserver its ``sys.path``, which ``main()`` ignores on
    Python 3.11 (the server starts with the path of ``python -c`` in the host's working
    directory). Without it, an entrypoint module found through the host's path (the
    script's own directory, say) would not preload: every worker would import it as it
    starts instead, silently. The modules preloaded after this one see the host's path."""
    host_path = main.f_locals.get("sys_path")
    if isinstance(host_path, list):
        sys.path[:] = [entry for entry in host_path if isinstance(entry, str)]


#: imported by every child of the forkserver before it runs its target: by unpickling
#: the process object (``popen_fork``, ``popen_forkserver``) and by running the main
#: module again (``pkgutil``, for ``runpy.run_path``)
_EVERY_CHILD_IMPORTS = ("multiprocessing.popen_fork", "multiprocessing.popen_forkserver", "pkgutil")


def _preload_what_every_child_imports() -> None:
    for name in _EVERY_CHILD_IMPORTS:
        importlib.import_module(name)


class _MainOnDemand(types.ModuleType):
    """``__main__`` (and ``__mp_main__``) in a new worker, until something needs a name
    from the host's main module: the first such lookup runs the module, as
    ``multiprocessing`` would have at start, and every lookup then goes to it. A dunder
    (``__file__``, ``__spec__``) runs nothing: tools probe those on every module."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        main = _run_main()
        if main is None:  # the main module itself looks itself up as it runs
            msg = f"module '__main__' has no attribute {name!r} (yet: it is being run)"
            raise AttributeError(msg)
        return getattr(main, name)


#: how to run the host's main module in a worker that has not yet run it:
#: multiprocessing's fix-up, its argument, and the ``__main__`` that the stand-in
#: replaced (the forkserver's own); None once it ran, or while it runs
_pending_main: tuple[Callable[[str], None], str, types.ModuleType] | None = None
_running_main = False


def _run_main() -> types.ModuleType | None:
    """The host's main module in this worker, run now if it had not been; None while
    it runs."""
    global _pending_main, _running_main
    if _pending_main is None:
        return None if _running_main else sys.modules["__mp_main__"]
    fixup, main, replaced = _pending_main
    process = multiprocessing.current_process()
    _pending_main, _running_main = None, True
    # As at a start: a pool that the script opens at import is refused (NestedPoolError).
    inheriting = getattr(process, "_inheriting", False)
    process._inheriting = True  # type: ignore[attr-defined]
    try:
        fixup(main)
    except BaseException as exc:
        _pending_main = (fixup, main, replaced)  # the next lookup tries again
        if isinstance(exc, Exception):
            raise
        # sys.exit() at the script's top level: the job that needed it fails, saying so;
        # the worker serves on.
        msg = f"the main module {main!r} raised {exc!r} as this worker ran it on demand"
        raise RuntimeError(msg) from exc
    finally:
        _running_main = False
        if not inheriting:
            del process._inheriting  # type: ignore[attr-defined]
    if isinstance(sys.modules["__mp_main__"], _MainOnDemand):
        # The fix-up chose to run nothing (a package's __main__, run with -m, is never run
        # again): the worker keeps the __main__ it had, as it would have at start.
        sys.modules["__main__"] = sys.modules["__mp_main__"] = replaced
    return sys.modules["__mp_main__"]


def _on_demand(fixup: Callable[[str], None]) -> Callable[[str], None]:
    """``fixup`` (multiprocessing's ``_fixup_main_from_path`` or ``_from_name``, which run
    the host's main module in a new child), deferred in a worker of the process backend
    whose forkserver did not preload the main module."""

    def deferred(main: str) -> None:
        global _pending_main
        ours = multiprocessing.current_process().name.startswith(WORKER_NAME_PREFIX)
        # The host's main module runs as __mp_main__: a __main__ still named __main__
        # is the forkserver's own (its `python -c`), and the server did not preload it.
        preloaded = getattr(sys.modules.get("__main__"), "__name__", None) != "__main__"
        if not ours or preloaded:
            fixup(main)
            return
        _pending_main = (fixup, main, sys.modules["__main__"])
        stand_in = _MainOnDemand("__mp_main__")
        sys.modules["__main__"] = sys.modules["__mp_main__"] = stand_in

    return deferred


def run_the_main_module_on_demand() -> None:
    """Have the workers forked from this process run the host's main module only when
    something needs a name from it. ``multiprocessing.spawn.prepare()`` looks both
    fix-ups up as it runs, in each new child."""
    spawn = multiprocessing.spawn
    spawn._fixup_main_from_path = _on_demand(spawn._fixup_main_from_path)  # type: ignore[attr-defined]
    spawn._fixup_main_from_name = _on_demand(spawn._fixup_main_from_name)  # type: ignore[attr-defined]


_MAIN = _forkserver_main()
if _MAIN is not None:
    _take_the_hosts_path(_MAIN)
    del _MAIN
    signal.signal(signal.SIGTERM, _ignore)
    os.register_at_fork(after_in_child=_restore_default)
    _preload_what_every_child_imports()
    run_the_main_module_on_demand()
