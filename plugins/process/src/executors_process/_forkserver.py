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
the child runs the main module again): a worker then starts in about a third less CPU.
"""

from __future__ import annotations

import importlib
import multiprocessing.forkserver
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing. Unlike ``SIG_IGN``, a handler is not inherited by
    programs that a process runs, which start with the default action."""


def _restore_default() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _forkserver_main() -> FrameType | None:
    """The frame of the forkserver's ``main()`` if it is importing this module (as a
    preload), else None."""
    main = multiprocessing.forkserver.main.__code__
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


_MAIN = _forkserver_main()
if _MAIN is not None:
    _take_the_hosts_path(_MAIN)
    del _MAIN
    signal.signal(signal.SIGTERM, _ignore)
    os.register_at_fork(after_in_child=_restore_default)
    _preload_what_every_child_imports()
