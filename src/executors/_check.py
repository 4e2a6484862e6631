"""``executors check``: the conformance suite against one installed backend.

The suite runs under pytest, in this process, with an empty configuration of its own;
its pools get the backend's options the command line read from the configuration (as
``executors run`` reads them), and pool settings of their own. Hypothesis keeps its
files in a temporary directory, so that nothing is left in the current one.
Each rule's verdict is written the moment the rule ends (a row of the table, or a JSON
line), so a checker stopped from outside still leaves every finished rule's verdict.
``--timeout`` bounds the whole run: when it is up, the rule still running fails, naming
the backend calls it was waiting for, the rules not begun are reported not run, and the
checker exits at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ._config import ConfigRow
    from .testing.conformance import Rule

#: lines of a failure shown under its rule in the table
_FAILURE_LINES = 12
#: seconds the whole check may take, by default, per profile
DEFAULT_TIMEOUT = {"quick": 300.0, "ci": 600.0, "thorough": 3600.0}


@attrs.define
class RuleResult:
    """How one rule went."""

    status: str = "not run"
    detail: str = ""
    #: seconds the rule took, setup and teardown included
    seconds: float = 0.0
    #: seconds the rule was allowed in all (0: not reported)
    deadline: float = 0.0
    #: the steps of a state machine's failing run, when it failed
    example: list[str] = attrs.field(factory=list)
    #: what the rule measured (jobs run, machine runs and steps)
    notes: dict[str, object] = attrs.field(factory=dict)

    def as_json(self, checked: Rule) -> dict[str, object]:
        return {
            "event": "rule",
            "id": checked.id,
            "name": checked.name,
            "level": checked.level,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "deadline": round(self.deadline, 3),
            "example": self.example,
            "notes": self.notes,
        }


@attrs.define(eq=False)
class Reporter:
    """Writes each rule's verdict as it ends: a table row, or a JSON line."""

    backend: str
    profile: str
    out: IO[str]
    as_json: bool
    rules: tuple[Rule, ...]
    #: the backend's options the rules' pools get, with where each came from
    options: Sequence[ConfigRow] = ()
    results: dict[str, RuleResult] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _done: bool = False

    def begin(self, rules_version: str, timeout: float) -> None:
        if self.as_json:
            self._line(
                {
                    "event": "start",
                    "backend": self.backend,
                    "profile": self.profile,
                    "rules_version": rules_version,
                    "timeout": timeout,
                    "options": [row._asdict() for row in self.options],
                    "rules": [r.id for r in self.rules],
                }
            )
            return
        self._write(
            f"Conformance of backend {self.backend!r} (rules version {rules_version}, "
            f"profile {self.profile}, timeout {timeout:g}s)\n"
        )
        if not self.options:
            self._write("Backend options: none set (the backend's defaults)\n")
            return
        self._write("Backend options:\n")
        for key, value, source in self.options:
            self._write(f"  {key} = {value!r} (from {source})\n")

    def rule_ended(self, checked: Rule, result: RuleResult) -> None:
        with self._lock:
            if self._done or checked.id in self.results:
                return
            self.results[checked.id] = result
            if self.as_json:
                self._line(result.as_json(checked))
                return
            timing = f"{result.seconds:6.1f}s" if result.status != "not run" else " " * 7
            width = max(len(r.name) for r in self.rules)
            self._write(f"{checked.id:<6} {checked.name:<{width}} {result.status:<8} {timing}\n")
            for line in result.detail.splitlines() if result.status != "passed" else []:
                self._write(f"       {line}\n")

    def end(self, started: float, *, timed_out: bool = False) -> bool:
        """Report every rule not reported yet as not run, then the verdict; True when
        no rule failed."""
        reason = "the checker's --timeout was reached" if timed_out else ""
        for checked in self.rules:
            self.rule_ended(checked, RuleResult(detail=reason))
        with self._lock:
            self._done = True
            counts: dict[str, int] = {}
            for result in self.results.values():
                counts[result.status] = counts.get(result.status, 0) + 1
            ok = not timed_out and set(counts) <= {"passed", "skipped"}
            seconds = time.monotonic() - started
            if self.as_json:
                self._line(
                    {
                        "event": "end",
                        "ok": ok,
                        "seconds": round(seconds, 3),
                        "counts": counts,
                        "timed_out": timed_out,
                    }
                )
            else:
                summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                verdict = "conforms" if ok else "does NOT conform"
                self._write(
                    f"{len(self.rules)} rules: {summary} in {seconds:.1f}s: backend "
                    f"{self.backend!r} {verdict}\n"
                )
            return ok

    def _line(self, document: object) -> None:
        self._write(json.dumps(document, default=str) + "\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


@attrs.define(eq=False)
class Collector:
    """A pytest plugin: turns the reports of each rule's test into its verdict."""

    reporter: Reporter
    tests: dict[str, Rule]
    #: the rule running now, and the suite instance running it (for --timeout)
    running: tuple[Rule, Any] | None = None
    _partial: dict[str, RuleResult] = attrs.field(factory=dict)

    def _rule_of(self, nodeid: str) -> Rule | None:
        return self.tests.get(nodeid.rsplit("::", 1)[-1].partition("[")[0])

    def pytest_runtest_setup(self, item: Any) -> None:
        checked = self._rule_of(item.nodeid)
        if checked is not None:
            self.running = (checked, getattr(item, "instance", None))

    def pytest_runtest_logreport(self, report: Any) -> None:
        checked = self._rule_of(report.nodeid)
        if checked is None:
            return
        result = self._partial.setdefault(checked.id, RuleResult())
        result.seconds += report.duration
        properties = dict(report.user_properties)
        result.deadline = float(properties.pop("deadline", result.deadline))
        result.notes.update(properties)
        if report.failed and result.status != "failed":
            text = report.longreprtext
            result.status, result.detail = "failed", failure_summary(text)
            result.example = example_of(text)
        elif report.skipped and result.status != "failed":
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            result.status, result.detail = "skipped", str(reason).removeprefix("Skipped: ")
        elif report.when == "call" and result.status == "not run":
            result.status = "passed"
        if report.when == "teardown":
            self.running = None
            self.reporter.rule_ended(checked, self._partial.pop(checked.id))


def failure_summary(text: str) -> str:
    """The error lines (pytest's ``E`` lines) of a failure, else its last lines."""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    lines = [line for line in lines if line] or text.strip().splitlines()[-_FAILURE_LINES:]
    if len(lines) > _FAILURE_LINES:
        lines = [*lines[: _FAILURE_LINES - 1], "..."]
    return "\n".join(lines)


def example_of(text: str) -> list[str]:
    """The steps of the failing run a state machine reports: the lines indented under
    its "steps of this run:"."""
    lines = [line[1:] if line.startswith("E ") else line for line in text.splitlines()]
    steps: list[str] = []
    header: int | None = None  # the header's indentation, while under it
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() == "steps of this run:":
            header, steps = indent, []
        elif header is not None and line.strip() and indent > header:
            steps.append(line.strip())
        else:
            header = None
    return steps


@attrs.frozen
class OptionsPlugin:
    """A pytest plugin: hands the backend's options to the suite (through the
    ``executors_backend_options`` fixture of the executors pytest plugin)."""

    backend: str
    options: Sequence[ConfigRow]

    def pytest_configure(self, config: Any) -> None:
        from .testing.pytest_plugin import BACKEND_OPTIONS

        prefix = f"{self.backend}."
        options = {row.key.removeprefix(prefix): row.value for row in self.options}
        config.stash[BACKEND_OPTIONS] = {self.backend: options}


@contextlib.contextmanager
def _hypothesis_files_in(directory: str) -> Iterator[None]:
    """Hypothesis keeps its files (example database, caches) in ``directory`` meanwhile,
    instead of a ``.hypothesis`` directory it would make in the current one."""
    from hypothesis import configuration

    configuration.set_hypothesis_home_dir(directory)
    try:
        yield
    finally:
        # Back to where Hypothesis looks by default (HYPOTHESIS_STORAGE_DIRECTORY, else
        # the current directory): check() is the only one to choose another.
        configuration.set_hypothesis_home_dir(None)


@contextlib.contextmanager
def _watchdog(collector: Collector, timeout: float, started: float) -> Iterator[None]:
    """After ``timeout`` seconds: fail the rule still running, report the rest not run,
    and end the process at once (a backend that hangs may hold threads and processes
    that would keep it from exiting)."""
    finished = threading.Event()

    def watch() -> None:
        if finished.wait(timeout):
            return
        running = collector.running
        if running is not None:
            checked, instance = running
            watched = getattr(instance, "watched", None)
            calls = watched.log.describe_running() if watched is not None else ""
            detail = f"still running when the checker's --timeout of {timeout:g}s was reached"
            if calls:
                detail += f": {calls}"
            collector.reporter.rule_ended(checked, RuleResult("failed", detail))
        collector.reporter.end(started, timed_out=True)
        end_now(1)

    thread = threading.Thread(target=watch, name="executors-check-timeout", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()


def end_now(status: int) -> None:
    """Leave at once: kill this process's children, flush, and exit without waiting for
    what a hung backend holds (threads, worker processes multiprocessing would join)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def check(
    backend: str,
    profile: str,
    *,
    as_json: bool,
    timeout: float,
    options: Sequence[ConfigRow] = (),
) -> int:
    """Run the suite against ``backend``, its pools with ``options`` (rows of the
    backend's options: ``"<backend>.<option>"``, a value of the option's type, where it
    came from); the exit status (0: it conforms, 1: not)."""
    import pytest

    from .testing.conformance import RULES, RULES_VERSION
    from .testing.conformance._guard import abandoned_loops

    started = time.monotonic()
    # pytest captures file descriptor 1 while a test runs: the verdicts go to a copy of
    # it made now, so that each is on the real stdout the moment it is written.
    sys.stdout.flush()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    reporter = Reporter(backend, profile, out, as_json, RULES, options)
    collector = Collector(reporter, {r.test_name: r for r in RULES})
    reporter.begin(RULES_VERSION, timeout)
    with (
        tempfile.TemporaryDirectory() as directory,
        _hypothesis_files_in(directory),
        _watchdog(collector, timeout, started),
    ):
        # An empty configuration file, and no conftest.py (pytest would load those of the
        # current directory and its test* folders; the suite has none): the suite runs the
        # same from any directory, with no project's pytest settings or conftest.py (its
        # fixtures, its leak checks) around it.
        ini = Path(directory, "pytest.ini")
        ini.write_text("[pytest]\n")
        # pytest's own report goes to stderr: stdout carries the verdicts only.
        with contextlib.redirect_stdout(sys.stderr):
            status = pytest.main(
                [
                    "-c",
                    str(ini),
                    "--rootdir",
                    directory,
                    "--noconftest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    "--no-header",
                    "--tb=short",
                    # executors, anyio and pytest's plugins are imported before pytest starts
                    "-W",
                    "ignore::pytest.PytestAssertRewriteWarning",
                    "--pyargs",
                    "executors.testing.conformance",
                    "--executors-backend",
                    backend,
                    "--executors-profile",
                    profile,
                ],
                plugins=[collector, OptionsPlugin(backend, options)],
            )
    ok = reporter.end(started)
    out.close()
    failed = not ok or status not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    exit_status = 1 if failed else 0
    if abandoned_loops():
        # A rule gave up on a backend that would not return: what it holds must not keep
        # this process from exiting.
        end_now(exit_status)
    return exit_status
