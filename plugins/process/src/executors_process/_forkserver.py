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
"""

from __future__ import annotations

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


def _in_forkserver() -> bool:
    """Whether the forkserver's ``main()`` is importing this module (as a preload)."""
    main = multiprocessing.forkserver.main.__code__
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is main:
            return True
        frame = frame.f_back
    return False


if _in_forkserver():
    signal.signal(signal.SIGTERM, _ignore)
    os.register_at_fork(after_in_child=_restore_default)
