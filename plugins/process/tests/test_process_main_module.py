"""A worker forked from the forkserver runs the host's main module only when something
needs a name from it: a payload or entrypoint defined in the script (pickled by
reference), or a job that looks it up. Then it runs it once, as ``multiprocessing``
would have at start, and a script that fails there fails only the jobs that needed it.
With the spawn start method every worker runs it as it starts, as ``multiprocessing``
does."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from process_helpers import run_script

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the forkserver is Linux's"
)

#: The main module of every script here. Wherever it runs, it first records its pid and
#: the name it runs under in ran.txt beside it; {body} follows.
SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys

    import anyio

    from executors import JobFailed, open_pool

    with open(os.path.join(os.path.dirname(__file__), "ran.txt"), "a") as ran:
        ran.write(f"{{os.getpid()}} {{__name__}}\\n")


    class Point:
        def __init__(self, x):
            self.x = x


    def where(ctx):
        return os.getpid(), os.getppid()


    async def run_all(entrypoint, payloads, start_method="forkserver"):
        outcomes = []
        async with open_pool(
            backend="process",
            entrypoint=entrypoint,
            idle_executors=1,
            max_executors=1,
            backend_options={{"start_method": start_method}},
        ) as pool:
            for payload in payloads:
                try:
                    outcomes.append(await pool.run(payload))
                except JobFailed as exc:
                    outcomes.append(f"FAILED {{exc}}")
        return outcomes


    def report(*coroutines):
        async def main():
            print(json.dumps([await coroutine for coroutine in coroutines]))

        anyio.run(main)

    {body}
    """
)

#: the jobs module beside the script (not the main module)
JOBS = textwrap.dedent(
    """
    import os


    def where(ctx):
        return os.getpid(), os.getppid()


    def point_x(ctx):
        import __main__

        return os.getpid(), ctx.payload.x, type(ctx.payload) is __main__.Point


    def kind(ctx):
        return os.getpid(), type(ctx.payload).__name__
    """
)


def _run(tmp_path: Path, body: str) -> tuple[Any, list[tuple[int, str]]]:
    """What the script reported (one list of outcomes per pool), and where its main
    module ran: (pid, name), the host's first."""
    (tmp_path / "host.py").write_text(SCRIPT.format(body=textwrap.dedent(body)))
    (tmp_path / "appjobs.py").write_text(JOBS)
    reported = run_script(tmp_path / "host.py")
    words = (tmp_path / "ran.txt").read_text().split()
    ran = [(int(pid), name) for pid, name in zip(words[::2], words[1::2], strict=True)]
    assert ran[0][1] == "__main__", ran  # the host
    return reported, ran


@pytest.mark.parametrize(("start_method", "runs_in_workers"), [("forkserver", 0), ("spawn", 2)])
def test_a_worker_runs_the_main_module_as_it_starts_only_with_spawn(
    tmp_path: Path, start_method: str, runs_in_workers: int
) -> None:
    # two pools of one worker each, with an entrypoint of another module
    reported, ran = _run(
        tmp_path,
        f"""
        if __name__ == "__main__":
            report(
                run_all("appjobs:where", [None], {start_method!r}),
                run_all("appjobs:where", [None], {start_method!r}),
            )
        """,
    )
    workers = {pid for pool in reported for pid, _ in pool}
    assert len(workers) == 2
    assert ran[1:] == [(pid, "__mp_main__") for pid, _ in ran[1:] if pid in workers]
    assert len(ran[1:]) == runs_in_workers


def test_a_worker_runs_the_main_module_once_when_a_payload_needs_it(tmp_path: Path) -> None:
    reported, ran = _run(
        tmp_path,
        """
        if __name__ == "__main__":
            report(run_all("appjobs:point_x", [Point(1), Point(2)]))
        """,
    )
    [[(pid, x1, same_class), (pid2, x2, _)]] = reported
    assert (x1, x2, same_class) == (1, 2, True)  # a job found the class through __main__
    assert pid == pid2
    assert ran[1:] == [(pid, "__mp_main__")]  # once, by the worker, for the first job


def test_an_entrypoint_defined_in_the_main_module_runs_it_as_the_worker_starts(
    tmp_path: Path,
) -> None:
    # a function object is pickled by reference, as __main__.where: to load it, the
    # worker needs the main module
    reported, ran = _run(
        tmp_path,
        """
        if __name__ == "__main__":
            report(run_all(where, [None, None]))
        """,
    )
    [[(pid, _), (pid2, _)]] = reported
    assert pid == pid2
    assert ran[1:] == [(pid, "__mp_main__")]


def test_an_entrypoint_named_in_the_main_module_runs_it_once_where_it_is_needed(
    tmp_path: Path,
) -> None:
    # "__main__:where" puts the main module on the preload list of the first pool, which
    # starts the forkserver. Where the forkserver honours that (Python 3.11's ignores a
    # __main__ on the list), it runs it once and no worker does; else each worker that
    # needs it runs it once, as it starts.
    reported, ran = _run(
        tmp_path,
        """
        if __name__ == "__main__":
            report(run_all("__main__:where", [None, None]), run_all(where, [None]))
        """,
    )
    [[(first, forkserver), (again, _)], [(second, _)]] = reported
    assert first == again
    if (forkserver, "__mp_main__") in ran:
        assert ran[1:] == [(forkserver, "__mp_main__")]
    else:
        assert ran[1:] == [(first, "__mp_main__"), (second, "__mp_main__")]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("raise RuntimeError('no settings in a worker')", "RuntimeError: no settings in a worker"),
        (
            "sys.exit(3)",
            "RuntimeError: the main module '{path}' raised SystemExit(3) as this worker "
            "ran it on demand",
        ),
    ],
)
def test_a_main_module_that_fails_in_a_worker_fails_only_the_jobs_that_need_it(
    tmp_path: Path, failure: str, message: str
) -> None:
    reported, ran = _run(
        tmp_path,
        f"""
        if __name__ == "__mp_main__":
            {failure}

        if __name__ == "__main__":
            report(run_all("appjobs:kind", [Point(1), "plain", Point(2)]))
        """,
    )
    [[first, (pid, kind), third]] = reported
    assert kind == "str"  # the worker served on
    expected = message.format(path=tmp_path / "host.py")
    for failed, job in ((first, 1), (third, 3)):
        assert isinstance(failed, str)
        assert failed.startswith("FAILED "), failed
        assert f"the payload of job pool1-job-{job} cannot be unpickled in the worker" in failed
        assert expected in failed, failed
    # the worker tried again for the second job that needed it: the same worker
    assert ran[1:] == [(pid, "__mp_main__"), (pid, "__mp_main__")]
