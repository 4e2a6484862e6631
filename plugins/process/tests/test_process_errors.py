"""Errors that cross the process boundary: remote exceptions, and payloads, results and
exceptions that do not pickle."""

from __future__ import annotations

import pickle
import threading

import anyio
import process_jobs
import pytest
from process_helpers import PATIENCE, config

from executors import FailureReason, JobFailed, JobOutcome, JobStatus, Pool, RemoteError, open_pool
from executors_process import WorkerError
from executors_process._protocol import error_info

pytestmark = pytest.mark.anyio


async def outcome_of(pool: Pool, payload: object) -> JobOutcome:
    with anyio.fail_after(PATIENCE):
        return await (await pool.submit(payload)).outcome()


def failure(outcome: JobOutcome) -> tuple[str, str, BaseException | None]:
    """The outcome of a job that raised: type name, message, exception."""
    assert outcome.status is JobStatus.FAILED, outcome
    assert outcome.reason is FailureReason.RAISED, outcome
    assert outcome.error is not None
    return outcome.error.type_name, outcome.error.message, outcome.error.exception


async def test_a_raised_exception_comes_back_with_its_type_traceback_and_instance() -> None:
    async with open_pool(config(entrypoint="process_jobs:raise_custom")) as pool:
        outcome = await outcome_of(pool, "payload 7")
        with anyio.fail_after(PATIENCE), pytest.raises(JobFailed, match="boom: again") as info:
            await pool.run("again")
    type_name, message, exception = failure(outcome)
    assert type_name == "process_jobs.JobBoom"
    assert message == "boom: payload 7"
    assert outcome.error is not None
    assert 'raise JobBoom(f"boom: {ctx.payload}")' in outcome.error.traceback
    assert isinstance(exception, process_jobs.JobBoom)
    assert exception.args == ("boom: payload 7",)
    assert isinstance(info.value.__cause__, process_jobs.JobBoom)


@pytest.mark.parametrize(
    ("entrypoint", "type_name", "message"),
    [
        ("raise_unpicklable", "process_jobs.HoldsALock", "this exception holds a lock"),
        ("raise_not_unpicklable", "process_jobs.NeedsTwoArguments", "one and two"),
    ],
)
async def test_an_exception_that_does_not_pickle_still_comes_back_clearly(
    entrypoint: str, type_name: str, message: str
) -> None:
    async with open_pool(config(entrypoint=f"process_jobs:{entrypoint}")) as pool:
        outcome = await outcome_of(pool, None)
    assert failure(outcome)[:2] == (type_name, message)
    assert outcome.error is not None
    assert f"{type_name.rpartition('.')[2]}(" in outcome.error.traceback
    # It could not be rebuilt, so it stands in as a WorkerError naming the original.
    assert isinstance(outcome.error.exception, WorkerError)
    assert str(outcome.error.exception) == f"{type_name}: {message}"


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with the traceback of being raised."""
    try:
        raise exc
    except BaseException as raised:
        return raised


@pytest.mark.parametrize(
    ("exc", "pickles"),
    [
        (process_jobs.JobBoom("boom: on the wire"), True),
        (ValueError("builtin"), True),
        (process_jobs.HoldsALock("this exception holds a lock"), False),
        (process_jobs.NeedsTwoArguments("one", "two"), False),
    ],
    ids=["custom", "builtin", "does-not-pickle", "does-not-unpickle"],
)
def test_the_wire_error_is_the_remote_error_and_the_exception_where_it_pickles(
    exc: BaseException, pickles: bool
) -> None:
    raised = _raised(exc)
    remote = RemoteError.from_exception(raised)

    type_name, message, text, pickled = error_info(raised)

    assert (type_name, message, text) == (remote.type_name, remote.message, remote.traceback)
    assert "in _raised" in text
    if pickles:
        assert pickled is not None
        assert pickle.loads(pickled).args == raised.args
    else:
        assert pickled is None


async def failure_between_two_runs(
    entrypoint: str, payload: object
) -> tuple[str, str, BaseException | None]:
    """Run ``payload``, which must fail, between two jobs of payload None on a one-worker
    pool: check that both of those returned the same (the worker served on), and return
    the failure (type name, message, exception)."""
    async with open_pool(config(entrypoint=f"process_jobs:{entrypoint}")) as pool:
        with anyio.fail_after(PATIENCE):
            before = await pool.run(None)
        outcome = await outcome_of(pool, payload)
        with anyio.fail_after(PATIENCE):
            after = await pool.run(None)
    assert after == before
    return failure(outcome)


async def test_an_unpicklable_payload_fails_only_its_job_and_the_worker_stays() -> None:
    type_name, message, exception = await failure_between_two_runs("pid", threading.Lock())
    assert type_name == "_pickle.PicklingError"
    assert "payload" in message
    assert "cannot pickle '_thread.lock' object" in message
    assert isinstance(exception, pickle.PicklingError)


async def test_an_unpicklable_result_fails_only_its_job() -> None:
    type_name, message, exception = await failure_between_two_runs("odd_result", "lock")
    assert type_name == "_pickle.PicklingError"
    assert "result" in message
    assert "cannot pickle '_thread.lock' object" in message
    assert isinstance(exception, pickle.PicklingError)


async def test_a_result_that_does_not_unpickle_in_the_host_fails_only_its_job() -> None:
    type_name, message, exception = await failure_between_two_runs("odd_result", "needs two")
    assert type_name == "_pickle.UnpicklingError"
    assert "result" in message
    assert "missing 1 required positional argument: 'second'" in message
    assert isinstance(exception, pickle.UnpicklingError)


async def test_a_payload_that_does_not_unpickle_in_the_worker_fails_only_its_job() -> None:
    type_name, message, exception = await failure_between_two_runs(
        "pid", process_jobs.NeedsTwoArguments("one", "two")
    )
    assert type_name == "_pickle.UnpicklingError"
    assert "payload" in message
    assert "missing 1 required positional argument: 'second'" in message
    assert isinstance(exception, pickle.UnpicklingError)
