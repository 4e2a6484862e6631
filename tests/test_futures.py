"""``PoolExecutor``: the concurrent.futures drop-in, on the process, thread and coroutine
backends. Every wait has a deadline (``result(timeout)``, ``as_completed(timeout=)``)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from executors import FailureReason, JobFailed, PoolExecutor
from executors.calls import current_job
from tests import jobs

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["process", "thread", "coroutine"]
WAIT = 60.0


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(backend: str) -> Iterator[PoolExecutor]:
    with PoolExecutor(max_workers=2, backend=backend, idle_executors=2) as executor:
        yield executor


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{what} did not start within {WAIT}s"
        time.sleep(0.01)


def test_submit_runs_plain_functions_with_args_and_kwargs(executor: PoolExecutor) -> None:
    assert executor.submit(jobs.add, 2, b=3).result(WAIT) == 5
    assert executor.submit(pow, 2, 10).result(WAIT) == 1024


def test_it_is_a_concurrent_futures_executor(executor: PoolExecutor) -> None:
    assert isinstance(executor, cf.Executor)
    futures = [executor.submit(jobs.add, i, i) for i in range(20)]
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=WAIT)) == [
        2 * i for i in range(20)
    ]
    done, not_done = cf.wait(futures, timeout=WAIT)
    assert len(done) == 20
    assert not not_done


def test_a_raised_exception_is_the_calls_own_with_where_it_was_raised(
    executor: PoolExecutor, backend: str
) -> None:
    future = executor.submit(jobs.fail_with, "bad value")
    with pytest.raises(ValueError, match="bad value") as info:
        future.result(WAIT)
    if backend == "process":
        # the traceback of the worker, chained as ProcessPoolExecutor chains it
        cause = info.value.__cause__
        assert cause is not None
        assert "fail_with" in str(cause)
    else:
        assert "fail_with" in "".join(__import__("traceback").format_tb(info.value.__traceback__))


def test_done_callbacks_run_with_the_future(executor: PoolExecutor) -> None:
    called = threading.Event()
    seen: list[int] = []

    def callback(future: cf.Future[int]) -> None:
        seen.append(future.result())
        called.set()

    executor.submit(jobs.add, 40, 2).add_done_callback(callback)
    assert called.wait(WAIT), "the done callback was not called"
    assert seen == [42]


def test_map_is_ordered_and_takes_several_iterables(executor: PoolExecutor) -> None:
    assert list(executor.map(jobs.add, range(50), range(50), timeout=WAIT)) == [
        2 * i for i in range(50)
    ]
    assert list(executor.map(jobs.add, range(10), range(3), timeout=WAIT)) == [0, 2, 4]


@pytest.mark.parametrize("chunksize", [1, 7])
def test_map_reads_its_input_lazily_with_bounded_work_in_flight(
    executor: PoolExecutor, chunksize: int
) -> None:
    endless = jobs.Endless()
    results = executor.map(abs, endless, chunksize=chunksize, buffersize=3, timeout=WAIT)
    assert endless.read <= 3 * chunksize  # the first jobs go at the call, no more
    values = [next(results) for _ in range(40)]
    assert values == list(range(40))
    # at most the buffer, refilled as values are taken, beyond what was returned
    assert endless.read <= 40 + 4 * chunksize
    results.close()  # type: ignore[attr-defined]  # a generator


@pytest.mark.parametrize("chunksize", [1, 3])
def test_awaitables_a_plain_function_returns_are_awaited(
    executor: PoolExecutor, chunksize: int
) -> None:
    assert executor.submit(jobs.add_later, 2, 3).result(WAIT) == 5
    values = executor.map(jobs.add_later, range(7), range(7), chunksize=chunksize, timeout=WAIT)
    assert list(values) == [2 * i for i in range(7)]


def test_map_raises_the_first_failure_in_order(executor: PoolExecutor) -> None:
    results = executor.map(jobs.fail_with, ["first"], timeout=WAIT)
    with pytest.raises(ValueError, match="first"):
        list(results)


def test_map_timeout_counts_from_the_call(executor: PoolExecutor, tmp_path: Path) -> None:
    results = executor.map(jobs.wait_marked, [str(tmp_path / "m")], [30.0], timeout=0.2)
    with pytest.raises(TimeoutError):
        next(results)
    results.close()  # type: ignore[attr-defined]  # cancels what is left


@pytest.mark.parametrize("drop", ["close", "collect"])
def test_a_map_left_unread_cancels_the_jobs_it_sent(
    executor: PoolExecutor, tmp_path: Path, drop: str
) -> None:
    # map() sends its first jobs at the call; closing (or dropping) its iterator before
    # reading anything still cancels them, instead of leaving them to run their 60 s
    markers = [str(tmp_path / f"m{i}") for i in range(2)]
    results = executor.map(jobs.wait_marked, markers, [60.0, 60.0], buffersize=2)
    for marker in markers:
        _wait_for(Path(marker), "a job of the map")
    if drop == "close":
        results.close()  # type: ignore[attr-defined]  # a generator
    else:
        del results
        gc.collect()
    executor.wait_until(lambda s: s.busy == 0 and s.jobs_cancelled == 2, timeout=WAIT)
    assert executor.submit(jobs.add, 1, 1).result(WAIT) == 2


def test_shutdown_refuses_new_calls_and_is_idempotent(backend: str) -> None:
    executor = PoolExecutor(max_workers=1, backend=backend)
    assert executor.submit(jobs.add, 1, 1).result(WAIT) == 2
    executor.shutdown()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(jobs.add, 1, 1)


def test_shutdown_without_wait_still_closes_everything(backend: str) -> None:
    executor = PoolExecutor(max_workers=1, backend=backend)
    future = executor.submit(jobs.add, 1, 2)
    executor.shutdown(wait=False)
    assert future.result(WAIT) == 3
    # the pool closes in a thread of its own: it ends, and the leak check finds nothing
    for thread in threading.enumerate():
        if thread.name.endswith("-shutdown"):
            thread.join(WAIT)
            assert not thread.is_alive(), "the background shutdown did not end"


def test_cancel_before_start_and_cancel_futures_at_shutdown(backend: str, tmp_path: Path) -> None:
    executor = PoolExecutor(max_workers=1, backend=backend, idle_executors=1)
    marker = tmp_path / "running"
    running = executor.submit(jobs.wait_marked, str(marker), 30.0)
    _wait_for(marker, "the first call")
    waiting = executor.submit(jobs.add, 1, 1)
    later = executor.submit(jobs.add, 2, 2)
    assert waiting.cancel()
    assert waiting.cancelled()
    assert running.running()
    executor.shutdown(wait=True, cancel_futures=True)
    assert later.cancelled()
    assert running.cancelled()  # stopped, not left to run its 30 s


def test_cancel_stops_a_running_call_and_the_pool_serves_on(
    executor: PoolExecutor, tmp_path: Path, backend: str
) -> None:
    marker = tmp_path / "running"
    future = executor.submit(jobs.wait_marked, str(marker), 60.0)
    _wait_for(marker, "the call")
    assert future.cancel()
    with pytest.raises(cf.CancelledError):
        future.result(WAIT)
    # the job is stopped: its executor is free again (or replaced) for the next call
    assert executor.submit(jobs.add, 5, 5).result(WAIT) == 10
    executor.wait_until(lambda s: s.busy == 0, timeout=WAIT)
    if backend == "process":
        pid = int(marker.read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_per_call_timeout_fails_only_that_call(executor: PoolExecutor, tmp_path: Path) -> None:
    future = executor.submit_with(jobs.wait_marked, str(tmp_path / "m"), 60.0, timeout=0.3)
    with pytest.raises(JobFailed, match="timed_out") as info:
        future.result(WAIT)
    assert info.value.outcome.reason is FailureReason.TIMED_OUT
    assert executor.submit(jobs.add, 1, 2).result(WAIT) == 3


def test_a_crashed_worker_fails_only_its_own_future() -> None:
    with PoolExecutor(max_workers=2, backend="process") as executor:
        others = [executor.submit(jobs.add, i, 1) for i in range(10)]
        crashed = executor.submit(jobs.exit_now)
        more = [executor.submit(jobs.add, i, 2) for i in range(10)]
        with pytest.raises(JobFailed, match="crashed"):
            crashed.result(WAIT)
        assert [f.result(WAIT) for f in others] == [i + 1 for i in range(10)]
        assert [f.result(WAIT) for f in more] == [i + 2 for i in range(10)]


def test_initializer_and_max_tasks_per_child(backend: str) -> None:
    if backend == "coroutine":
        pytest.skip("one event loop: executors share the host's process and thread")
    with PoolExecutor(
        max_workers=1,
        backend=backend,
        initializer=jobs.initialize,
        initargs=("ready",),
        max_tasks_per_child=2,
    ) as executor:
        # calls 1 and 2 on the first worker, 3 and 4 on the second
        assert executor.submit(jobs.initialized).result(WAIT) == ["ready"]
        first = executor.submit(jobs.where).result(WAIT)
        second = executor.submit(jobs.where).result(WAIT)
        assert executor.submit(jobs.initialized).result(WAIT) == ["ready"]
        assert executor.submit(jobs.where).result(WAIT) != second
    assert first != second


def test_the_initializers_value_is_the_calls_state() -> None:
    with PoolExecutor(max_workers=1, backend="thread", initializer=jobs.make_state) as executor:
        assert executor.submit(jobs.call_state).result(WAIT) == {"model": "loaded"}
    with pytest.raises(LookupError, match="outside a job"):
        current_job()


def test_safe_from_many_threads_at_once(executor: PoolExecutor) -> None:
    def client(n: int) -> list[int]:
        return [executor.submit(jobs.add, n, i).result(WAIT) for i in range(25)]

    with cf.ThreadPoolExecutor(8) as clients:
        results = list(clients.map(client, range(8), timeout=WAIT * 2))
    assert results == [[n + i for i in range(25)] for n in range(8)]


def test_run_in_executor_and_as_asyncios_default_executor(
    executor: PoolExecutor, backend: str
) -> None:
    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.run_in_executor(executor, jobs.add, 1, 2), WAIT)
        loop.set_default_executor(executor.asyncio_default())
        second = await asyncio.wait_for(loop.run_in_executor(None, jobs.add, 3, 4), WAIT)
        if backend == "process":  # to_thread sends a contextvars.Context: it cannot travel
            return first, second, 11
        third = await asyncio.wait_for(asyncio.to_thread(jobs.add, 5, 6), WAIT)
        return first, second, third

    assert asyncio.run(main()) == (3, 7, 11)
    # asyncio.run shuts its default executor down, and with it ours
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(jobs.add, 1, 1)


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_workers must be a whole number"):
        PoolExecutor(max_workers=0, backend="thread")
    with pytest.raises(ValueError, match="takes no entrypoint"):
        PoolExecutor(backend="thread", entrypoint="tests.jobs:state_of")
    with PoolExecutor(max_workers=1, backend="thread") as executor:
        with pytest.raises(TypeError, match="needs a callable"):
            executor.submit(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunksize must be"):
            executor.map(abs, [1], chunksize=0)


def test_a_lambda_on_the_process_backend_fails_its_future_saying_why() -> None:
    with PoolExecutor(max_workers=1, backend="process") as executor:
        future = executor.submit(lambda: 1)
        with pytest.raises(pickle.PicklingError, match=r"cannot be pickled.*lambda"):
            future.result(WAIT)
        assert executor.submit(jobs.add, 1, 1).result(WAIT) == 2


def _script(code: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_interpreter_exit_without_shutdown_closes_the_pool_and_leaves_no_worker() -> None:
    done = _script(
        """
        import gc, os, psutil
        from executors import PoolExecutor
        from tests import jobs
        executor = PoolExecutor(max_workers=2, backend="process", drain_timeout=5)
        assert executor.submit(jobs.add, 1, 2).result(60) == 3
        # one dropped without shutdown, and one whose shutdown is still under way
        assert PoolExecutor(max_workers=1, backend="process").submit(pow, 2, 2).result(60) == 4
        PoolExecutor(max_workers=1, backend="process").shutdown(wait=False)
        # and on the other backends, one with a call just submitted at exit (drained)
        threads = PoolExecutor(max_workers=1, backend="thread", drain_timeout=5)
        coroutines = PoolExecutor(max_workers=1, backend="coroutine", drain_timeout=5)
        running = [threads.submit(jobs.add, 1, 1), coroutines.submit(jobs.add, 2, 2)]
        assert [f.result(60) for f in running] == [2, 4]
        threads.submit(jobs.echo_timeout, 1.0)
        gc.collect()
        print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)))
        """
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids, "no worker was started"
    # The workers are gone when the interpreter is; multiprocessing's forkserver (a
    # helper, not a worker) ends as it sees its parent gone, a moment later.
    _, left = psutil.wait_procs(_processes(pids), timeout=10)
    alive = [(p.pid, _cmdline(p)) for p in left if p.is_running() and p.status() != "zombie"]
    assert not alive, f"processes outlived the interpreter by 10 s: {alive}"


def _processes(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append(psutil.Process(pid))
    return found


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "?"


def test_a_forked_child_refuses_new_calls_instead_of_hanging() -> None:
    done = _script(
        """
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        from executors import PoolExecutor
        from tests import jobs
        executor = PoolExecutor(max_workers=1, backend="thread")
        assert executor.submit(jobs.add, 1, 2).result(60) == 3
        pid = os.fork()
        if pid == 0:
            try:
                executor.submit(jobs.add, 1, 1)
            except RuntimeError as exc:
                code = 0 if "os.fork()" in str(exc) else 1
            else:
                code = 2
            executor.shutdown()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        executor.shutdown()
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_map_holds_no_item_once_its_value_is_taken(executor: PoolExecutor) -> None:
    # With the collector off, an item outlives its value only if something the pool
    # keeps refers to it, or a reference cycle does (which would hold every chunk's
    # payload and values until the collector's next full pass).
    items = jobs.WatchedItems(1000)
    gc.disable()
    try:
        values = list(executor.map(jobs.value_of, items, chunksize=50, timeout=WAIT))
        alive = items.alive()
    finally:
        gc.enable()
    assert values == list(range(1000))
    assert not alive, f"{alive} of 1000 items are still held after the map"


def test_with_open_pool_in_sync_code_says_what_to_use() -> None:
    from executors import open_pool

    with (
        pytest.raises(TypeError, match=r"async with open_pool.*PoolExecutor"),
        open_pool(backend="thread"),
    ):
        pass  # pragma: no cover


def test_a_call_over_the_memory_limit_fails_alone() -> None:
    with PoolExecutor(
        max_workers=2, backend="process", memory_limit_mb=300, ping_interval=0.1
    ) as executor:
        hungry = executor.submit(jobs.hold_memory, 600, 60.0)
        others = [executor.submit(jobs.add, i, 1) for i in range(5)]
        with pytest.raises(JobFailed, match="memory_limit") as info:
            hungry.result(WAIT)
        assert info.value.outcome.reason is FailureReason.MEMORY_LIMIT
        assert [f.result(WAIT) for f in others] == [1, 2, 3, 4, 5]
        assert executor.submit(jobs.add, 2, 2).result(WAIT) == 4


def test_a_timeout_keyword_of_submit_is_the_functions_own() -> None:
    with PoolExecutor(max_workers=1, backend="thread") as executor:
        assert executor.submit(jobs.add, 1, b=2).result(WAIT) == 3
        assert executor.submit(jobs.echo_timeout, timeout=5).result(WAIT) == 5


def test_max_workers_below_the_configured_idle_executors_keeps_them_all_warm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "executors.toml").write_text('backend = "thread"\nidle_executors = 3\n')
    monkeypatch.chdir(tmp_path)
    with PoolExecutor(max_workers=1) as executor:
        assert executor.pool.config.idle_executors == 1
        assert executor.submit(jobs.add, 1, 1).result(WAIT) == 2
    with PoolExecutor(max_workers=4) as executor:
        assert executor.pool.config.idle_executors == 3


def test_a_calls_own_memory_limit_applies_to_that_call_only() -> None:
    with PoolExecutor(max_workers=2, backend="process", ping_interval=0.1) as executor:
        hungry = executor.submit_with(jobs.hold_memory, 400, 60.0, memory_limit_mb=200)
        with pytest.raises(JobFailed, match="memory_limit") as info:
            hungry.result(WAIT)
        assert info.value.outcome.reason is FailureReason.MEMORY_LIMIT
        # the same call without a limit of its own is not stopped (the pool has none)
        assert executor.submit(jobs.hold_memory, 400, 0.5).result(WAIT) == "held 400 MiB"


def test_a_memory_limit_where_memory_is_not_measured_is_refused() -> None:
    with (
        PoolExecutor(max_workers=1, backend="thread") as executor,
        pytest.raises(ValueError, match="does not measure its executors' memory"),
    ):
        executor.submit_with(jobs.add, 1, 1, memory_limit_mb=100)
    with (
        PoolExecutor(max_workers=1, backend="process") as executor,
        pytest.raises(ValueError, match="memory_limit_mb must be a positive number"),
    ):
        executor.submit_with(jobs.add, 1, 1, memory_limit_mb=0)


def test_wait_until_returns_the_statistics_that_hold_or_times_out() -> None:
    with PoolExecutor(max_workers=2, backend="thread", idle_executors=2) as executor:
        assert executor.wait_until(lambda s: s.idle == 2, timeout=WAIT).idle == 2
        with pytest.raises(TimeoutError):
            executor.wait_until(lambda s: s.idle > 2, timeout=0.1)


def test_calls_cancelled_as_they_are_accepted_leave_no_executor_busy(backend: str) -> None:
    # cancel() from this thread races the loop's accept of each call: whichever comes
    # first, the job ends and its executor is free again
    with PoolExecutor(max_workers=2, backend=backend, idle_executors=2) as executor:
        for _ in range(50):
            executor.submit(jobs.add, 1, 1).cancel()
        executor.wait_until(lambda s: s.busy == 0 and s.waiting == 0, timeout=WAIT)
        assert executor.submit(jobs.add, 2, 2).result(WAIT) == 4


def test_shutdown_from_a_done_callback_does_not_deadlock() -> None:
    executor = PoolExecutor(max_workers=1, backend="thread")
    future = executor.submit(jobs.add, 1, 1)
    called = threading.Event()

    def shut(_: cf.Future[int]) -> None:
        executor.shutdown(wait=True)  # on the executor's own loop, as callbacks run
        called.set()

    future.add_done_callback(shut)
    assert called.wait(WAIT), "shutdown() from a done callback did not return"
    executor.shutdown(wait=True)  # from here it waits for the close to end


def test_a_wait_until_pending_at_shutdown_ends(tmp_path: Path) -> None:
    executor = PoolExecutor(max_workers=1, backend="thread")
    ended = threading.Event()
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            executor.wait_until(lambda s: False)
        except BaseException as exc:  # cancelled as the pool closed
            errors.append(exc)
        ended.set()

    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    executor.wait_until(lambda s: s.idle == 1, timeout=WAIT)
    executor.shutdown(wait=True)
    assert ended.wait(WAIT), "a wait_until() still waits after shutdown"
    waiter.join(WAIT)
    assert len(errors) == 1
    assert isinstance(errors[0], cf.CancelledError)
