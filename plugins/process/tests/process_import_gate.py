"""An entrypoint module whose import fails inside workers while a flag file exists.

The host imports it normally (``open_pool`` checks the entrypoint there); a worker, or
the fork server that preloads it for them, that imports it while :data:`FLAG` exists gets
an ``ImportError``. Deleting the flag file lets the next worker import it.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from executors_process import _server, _worker

if TYPE_CHECKING:
    from executors import JobContext

#: The test session names the flag in the environment, which its workers inherit (the
#: forkserver's too, started after), so that two sessions never share one; without it,
#: one flag per user.
ENV = "PROCESS_TESTS_IMPORT_GATE"
FLAG = os.environ.get(ENV) or os.path.join(
    tempfile.gettempdir(), f"executors-process-tests-import-gate-{os.getuid()}"
)

if (_worker.CURRENT_EXECUTOR is not None or _server.SERVING) and os.path.exists(FLAG):
    msg = f"process_import_gate refuses to load while {FLAG} exists"
    raise ImportError(msg)


def echo(ctx: JobContext) -> object:
    return ctx.payload
