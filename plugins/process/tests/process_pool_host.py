"""A host for ``test_workers_never_outlive_a_sigkilled_host``, run as a script.

It opens a process pool with two idle workers, writes the pids of its process tree to
the file named by its argument (JSON: the backend's fork server, the workers forked from
it, and every descendant), then blocks until it is killed.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import psutil

from executors import open_pool
from executors_process._server import SERVER


async def main(report: str) -> None:
    async with open_pool(
        backend="process", entrypoint="executors.testing:echo", idle_executors=2, max_executors=2
    ) as pool:
        await pool.wait_until(lambda s: s.idle == 2)
        server = SERVER.pid
        assert server is not None, "the pool did not start the fork server"
        tree: dict[str, object] = {
            "forkserver": server,
            "workers": [p.pid for p in psutil.Process(server).children()],
            "descendants": [p.pid for p in psutil.Process().children(recursive=True)],
        }
        _write(report, tree)
        await anyio.sleep_forever()


def _write(path: str, tree: dict[str, object]) -> None:
    # The test polls for the file: it must never see it half written.
    with open(f"{path}.partial", "w") as file:
        json.dump(tree, file)
    os.replace(f"{path}.partial", path)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
