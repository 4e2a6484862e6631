"""The fork server imports, once, what every worker would otherwise import as it starts:
the modules of each pool's entrypoint (found through the host's ``sys.path``), the
worker module and what a new worker runs before it (``multiprocessing.spawn``), and
nothing of the host's side."""

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

    # Run where this module is imported: in the fork server when it was preloaded, else
    # in each worker as it starts.
    IMPORTED_IN = os.getpid()
    PROBED = ["executors_process._worker", "multiprocessing.spawn", "asyncio", "anyio", "psutil"]
    ALREADY_THERE = [name for name in PROBED if name in sys.modules]

    def where(ctx):
        return {
            "imported_in": IMPORTED_IN,
            "worker": os.getpid(),
            "parent": os.getppid(),
            "already_there": ALREADY_THERE,
        }

    async def awhere(ctx):
        return where(ctx)
    """
)

HOST = textwrap.dedent(
    """
    import json

    import anyio

    from executors import open_pool

    async def where(entrypoint):
        async with open_pool(
            backend="process",
            entrypoint=entrypoint,
            idle_executors=1,
            max_executors=1,
            backend_options={"start_method": "forkserver"},
        ) as pool:
            return await pool.run(None)

    async def main():
        # The second pool's module comes after the server started: it is preloaded too.
        first = await where("appjobs:where")
        second = await where("morejobs:where")
        coroutine = await where("asyncjobs:awhere")
        print(json.dumps({"first": first, "second": second, "async": coroutine}))

    if __name__ == "__main__":
        anyio.run(main)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_the_fork_server_preloads_each_pools_entrypoint_found_through_the_hosts_path(
    tmp_path: Path,
) -> None:
    # The script and its jobs modules sit in app/, run from elsewhere: app/ is on the
    # host's sys.path (the script's directory), not on that of the server's `python -c`.
    app = tmp_path / "app"
    app.mkdir()
    (app / "appjobs.py").write_text(JOBS)
    (app / "morejobs.py").write_text(JOBS)
    (app / "asyncjobs.py").write_text(JOBS)
    (app / "host.py").write_text(HOST)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = run_script(app / "host.py", cwd=elsewhere)
    for pool in ("first", "second", "async"):
        where = report[pool]
        assert where["imported_in"] != where["worker"], f"{pool}: each worker imported it"
        assert where["imported_in"] == where["parent"], f"{pool}: imported outside the server"
    # The worker's module and what a new worker runs first; not the host's side (anyio,
    # psutil), whose pages every fork would copy the tables of, nor asyncio until a
    # pool's entrypoint is `async def` (then before the pool's own modules).
    expected = ["executors_process._worker", "multiprocessing.spawn"]
    assert report["first"]["already_there"] == expected
    assert report["second"]["already_there"] == expected
    assert report["async"]["already_there"] == [*expected, "asyncio"]
    assert report["first"]["parent"] == report["second"]["parent"] == report["async"]["parent"]


MAIN_HOST = textwrap.dedent(
    """
    import json, os

    import anyio

    from executors import open_pool

    # Run where this script runs: the host, and the fork server that preloads it.
    RAN_IN = os.getpid()

    def where(ctx):
        return {"ran_in": RAN_IN, "worker": os.getpid(), "parent": os.getppid()}

    async def main():
        async with open_pool(
            backend="process", entrypoint="__main__:where", idle_executors=2, max_executors=2
        ) as pool:
            print(json.dumps([await pool.run(None), await pool.run(None), os.getpid()]))

    if __name__ == "__main__":
        anyio.run(main)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_an_entrypoint_of_the_main_module_runs_the_script_once_in_the_server(
    tmp_path: Path,
) -> None:
    script = tmp_path / "host.py"
    script.write_text(MAIN_HOST)
    first, second, host = run_script(script)
    for where in (first, second):
        assert where["ran_in"] not in (host, where["worker"]), "a worker ran the script"
        assert where["ran_in"] == where["parent"], "the script ran outside the server"
