"""The checker never hangs: a backend that ignores cancellation fails the rule that met
it, with a message naming the call that did not return, and the checker goes on.

In this process, on bare executors, each method in turn sleeps forever in a shielded
scope (released by the test once the rule has failed); through ``executors check``,
every method of an installed backend does, pools included, and the checker still
reports every rule and exits within its ``--timeout``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from executors.testing.conformance import rule
from tests.test_broken_backends import Case, Faithful, _failure_of, _shield, _suite_on

if TYPE_CHECKING:
    from pathlib import Path

    from executors import Job, JobOutcome


class _SleepsIn(Faithful):
    #: the method that sleeps forever, shielded, the first time it is called
    method = ""

    async def _sleep_if(self, method: str) -> None:
        if method == self.method and not _SLEPT:
            _SLEPT.append(method)
            with _shield():
                await anyio.sleep_forever()


#: the sleep happened: once released, the backend works (the rule is over by then)
_SLEPT: list[str] = []


@pytest.fixture(autouse=True)
def _sleep_once() -> None:
    _SLEPT.clear()


class SleepsInStart(_SleepsIn):
    method = "start"

    async def start(self) -> None:
        await self._sleep_if("start")
        await self.inner.start()


class SleepsInRunJob(_SleepsIn):
    method = "run_job"

    async def run_job(self, job: Job) -> JobOutcome:
        await self._sleep_if("run_job")
        return await self.inner.run_job(job)


class SleepsInAclose(_SleepsIn):
    method = "aclose"

    async def aclose(self) -> None:
        await self._sleep_if("aclose")
        await self.inner.aclose()


class SleepsInKill(_SleepsIn):
    method = "kill"

    async def kill(self) -> None:
        if self.inner.state.value != "closed":  # the first kill sleeps
            await self.inner.kill()
            await self._sleep_if("kill")
        await self.inner.kill()


@pytest.mark.parametrize(
    ("wrapper", "rule_id", "call"),
    [
        (SleepsInStart, "SL-1", "start() of"),
        (SleepsInRunJob, "SL-6", "run_job("),
        (SleepsInAclose, "SL-1", "aclose() of"),
        (SleepsInKill, "SL-8", "kill() of"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
def test_a_call_that_ignores_cancellation_fails_the_rule_naming_it(
    wrapper: type[Faithful], rule_id: str, call: str
) -> None:
    checked = rule(rule_id)
    # Short timeouts: a call that ignores its cancellation is found close_timeout + 2 s
    # past the deadline its caller set.
    case = Case(wrapper, "coroutine", rule_id)
    with _suite_on(case, wrapper, initialize_timeout=1.0, close_timeout=0.5) as suite:
        started = time.monotonic()
        failure = _failure_of(getattr(suite, checked.test_name))
        took = time.monotonic() - started
        deadline = suite.deadline
    assert failure.startswith(f"{checked.id} {checked.name}: "), failure
    assert call in failure, failure
    assert "has not returned" in failure or "did not return" in failure, failure
    assert took <= deadline + 5.0, f"{took:.1f}s > {deadline:.1f}s"


_SLEEPY_PLUGIN = """
import contextlib

import anyio
import attrs

import executors
from executors import Capabilities, ExecutorState, Health


async def _forever():
    with anyio.CancelScope(shield=True):
        await anyio.sleep_forever()


@attrs.define(eq=False)
class SleepyExecutor:
    id: str
    state: ExecutorState = ExecutorState.STARTING

    async def start(self):
        await _forever()

    async def run_job(self, job):
        await _forever()

    async def aclose(self):
        await _forever()

    async def kill(self):
        await _forever()

    def health(self):
        return Health(alive=True)


@attrs.frozen
class SleepyOptions:
    pass


class SleepyFactory:
    def create_executor(self, executor_id):
        return SleepyExecutor(executor_id)


@attrs.frozen
class SleepyBackend:
    name: str = "sleepy"
    capabilities: Capabilities = Capabilities(
        isolates_crashes=True,
        can_kill_running_job=True,
        measures_memory=True,
        sync_entrypoints=True,
        async_entrypoints=True,
    )
    options: type = SleepyOptions

    @contextlib.asynccontextmanager
    async def open(self, config, options):
        yield SleepyFactory()


@executors.hookimpl
def executors_register_backends(register):
    register(SleepyBackend())
"""

TIMEOUT = 40.0


def test_check_of_a_backend_that_sleeps_forever_reports_every_rule_within_its_timeout(
    tmp_path: Path,
) -> None:
    """An installed backend whose every method sleeps forever in a shielded scope: each
    rule it reaches fails naming the call that did not return, the rules the timeout
    leaves are reported not run, and the checker exits within its --timeout."""
    (tmp_path / "sleepy_plugin.py").write_text(_SLEEPY_PLUGIN)
    info = tmp_path / "sleepy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sleepy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[executors]\nsleepy = sleepy_plugin\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "executors", "check", "sleepy", "--json", "--timeout", str(TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 60,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took <= TIMEOUT + 20, f"the checker took {took:.0f}s with --timeout {TIMEOUT:g}"
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    rows = [line for line in lines if line["event"] == "rule"]
    assert [row["id"] for row in rows] == lines[0]["rules"]  # every rule, in order
    end = lines[-1]
    assert end["event"] == "end"
    assert end["ok"] is False
    assert end["timed_out"] is True
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) >= 2, rows
    for row in failed:
        assert "has not returned" in row["detail"] or "timeout" in row["detail"], row
        assert any(f"{method}" in row["detail"] for method in ("start()", "run_job(")), row
    assert {row["status"] for row in rows} <= {"failed", "not run", "skipped"}
    assert rows[-1]["status"] == "not run"
