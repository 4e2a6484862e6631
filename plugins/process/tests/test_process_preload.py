"""The forkserver imports, once, what every worker would otherwise import as it starts:
the entrypoint's module (found through the host's ``sys.path``, which the forkserver of
Python 3.11 ignores) and the modules ``multiprocessing`` imports in each new child."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
from process_helpers import run_script

if TYPE_CHECKING:
    from pathlib import Path

JOBS = textwrap.dedent(
    """
    import os, sys

    # Run where this module is imported: in the forkserver when it was preloaded, else
    # in each worker as it starts.
    IMPORTED_IN = os.getpid()
    CHILD_MODULES = ["multiprocessing.popen_fork", "multiprocessing.popen_forkserver", "pkgutil"]
    ALREADY_THERE = [name for name in CHILD_MODULES if name in sys.modules]

    def where(ctx):
        return {
            "imported_in": IMPORTED_IN,
            "worker": os.getpid(),
            "parent": os.getppid(),
            "already_there": ALREADY_THERE,
        }
    """
)

HOST = textwrap.dedent(
    """
    import json

    import anyio

    from executors import open_pool

    async def main():
        async with open_pool(
            backend="process",
            entrypoint="appjobs:where",
            idle_executors=1,
            max_executors=1,
            backend_options={"start_method": "forkserver"},
        ) as pool:
            print(json.dumps(await pool.run(None)))

    if __name__ == "__main__":
        anyio.run(main)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forkserver is Linux's")
def test_the_forkserver_preloads_an_entrypoint_found_through_the_hosts_path(
    tmp_path: Path,
) -> None:
    # The script and its jobs module sit in app/, run from elsewhere: app/ is on the host's
    # sys.path (the script's directory), not on that of the forkserver's `python -c`.
    app = tmp_path / "app"
    app.mkdir()
    (app / "appjobs.py").write_text(JOBS)
    (app / "host.py").write_text(HOST)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = run_script(app / "host.py", cwd=elsewhere)
    assert report["imported_in"] != report["worker"], "each worker imported the entrypoint"
    assert report["imported_in"] == report["parent"], "imported outside the forkserver"
    assert report["already_there"] == [
        "multiprocessing.popen_fork",
        "multiprocessing.popen_forkserver",
        "pkgutil",
    ]
