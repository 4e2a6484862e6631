"""An entrypoint module whose import never ends in the fork server (a module that waits
at import for something that does not come there); it imports at once anywhere else."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from executors_process import _server

if TYPE_CHECKING:
    from executors import JobContext

if _server.SERVING:
    threading.Event().wait()


def echo(ctx: JobContext) -> object:
    return ctx.payload
