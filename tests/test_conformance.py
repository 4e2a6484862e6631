"""The conformance suite against every in-repo backend, through `executors check` and
through the pytest plugin, each in a subprocess (pytest does not nest well)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executors import Registry
from executors.testing.conformance import RULES, RULES_VERSION, BackendConformance, Rule
from executors.testing.conformance import rule as rule_with_id

TIMEOUT = 120.0


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
        cwd=cwd,
    )


def _check(backend: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("-m", "executors", "check", backend, "--profile", "quick", *args)


def _row(stdout: str, rule: Rule) -> str:
    """The rule's row, with the detail lines under it."""
    lines = stdout.splitlines()
    for number, line in enumerate(lines):
        if line.startswith(f"{rule.id} "):
            detail = []
            for below in lines[number + 1 :]:
                if not below.startswith("       "):
                    break
                detail.append(below.strip())
            return "\n".join([line, *detail])
    raise AssertionError(f"no row for {rule.id} in:\n{stdout}")


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# oneshot: the example third-party distribution under examples/backend-plugin
@pytest.mark.parametrize("backend", ["coroutine", "thread", "process", "oneshot"])
def test_check_passes_every_rule_on_each_in_repo_backend(backend: str) -> None:
    result = _check(backend, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    start, *rows, end = _lines(result.stdout)
    assert start["event"] == "start"
    assert start["rules_version"] == RULES_VERSION
    assert [row["id"] for row in rows] == [rule.id for rule in RULES]
    statuses = {row["id"]: row["status"] for row in rows}
    assert set(statuses.values()) <= {"passed", "skipped"}, statuses
    assert end["event"] == "end"
    assert end["ok"] is True
    for row in rows:
        # Every rule ran within the deadline it was given (its own overhead aside).
        if row["status"] == "passed":
            assert row["seconds"] <= row["deadline"] + 2.0, row
    details = {row["id"]: row["detail"] for row in rows}
    if backend == "coroutine":  # EX-6: a coroutine cannot isolate a crash
        assert "requires capability isolates_crashes" in details["EX-6"]
    # A rule for a capability applies to the backends that declare it, and only to them.
    for rule_id, capability, declared_by in (
        ("EX-14", "measures_memory", ("process",)),
        ("SL-11", "measures_memory", ("process",)),
    ):
        if backend in declared_by:
            assert statuses[rule_id] == "passed", rule_id
        else:
            assert statuses[rule_id] == "skipped", rule_id
            assert f"requires capability {capability}" in details[rule_id]
    # The state machines and the wear rule say how much they did.
    notes = {row["id"]: row["notes"] for row in rows}
    assert notes["EX-1"]["runs"] >= 1
    assert notes["SL-13"]["steps"] >= 1
    assert notes["SL-9"]["jobs on one executor"] >= 1


def test_check_prints_a_row_per_rule_as_it_ends() -> None:
    result = _check("process")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rules version {RULES_VERSION}" in result.stdout
    for rule in RULES:
        row = _row(result.stdout, rule)
        assert rule.name in row
        assert " passed " in row or " skipped " in row, row
    assert " passed " in _row(result.stdout, rule_with_id("SL-11"))  # it measures memory
    assert result.stdout.splitlines()[-1].endswith("backend 'process' conforms")


def test_check_of_an_unknown_backend_exits_2_listing_the_installed_ones() -> None:
    result = _check("nosuch")
    assert result.returncode == 2
    assert "unknown backend 'nosuch'" in result.stderr
    for name in ("coroutine", "process", "thread"):
        assert name in result.stderr


def test_check_from_a_project_leaves_nothing_there_and_takes_none_of_its_tests(
    tmp_path: Path,
) -> None:
    """The checker may be run from a user's project: it leaves no .hypothesis directory
    (Hypothesis' example database and caches) and no pytest cache there, and the
    project's own tests/conftest.py (pytest would load it from the current directory:
    its fixtures, its leak checks) does not touch the suite's rules."""
    conftest = tmp_path / "tests" / "conftest.py"
    conftest.parent.mkdir()
    conftest.write_text(
        "import pytest\n\n"
        "@pytest.fixture(autouse=True)\n"
        "def _every_test_of_the_project():\n"
        "    raise RuntimeError('the project conftest ran in the suite')\n"
    )
    result = _run("-m", "executors", "check", "coroutine", "--profile", "quick", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the project conftest ran" not in result.stdout + result.stderr
    assert not (tmp_path / ".hypothesis").exists()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "tests",
        "tests/conftest.py",
    ]


_OPTIONED_PLUGIN = """
import attrs

import executors
from executors_coroutine import CoroutineBackend, CoroutineOptions


@attrs.frozen
class Options:
    token: str  # required: a pool opened without the configuration's options fails
    lag: float = 1.0
    label: str = ""


class Optioned:
    \"\"\"The coroutine backend under another name, with options of its own that must be
    those of the configuration.\"\"\"

    name = "optioned"
    options = Options

    def __init__(self):
        self._inner = CoroutineBackend()
        self.capabilities = self._inner.capabilities

    def open(self, config, options):
        expected = Options(token="from-pyproject", lag=0.5, label="from-set")
        if options != expected:
            raise executors.ConfigError(f"got options {options!r}, expected {expected!r}")
        return self._inner.open(config, CoroutineOptions())


@executors.hookimpl
def executors_register_backends(register):
    register(Optioned())
"""


def test_check_gives_its_pools_the_backend_options_of_the_configuration(tmp_path: Path) -> None:
    """Options from pyproject.toml, an EXECUTORS_* variable and --set reach every pool,
    of the type their field takes; the start line lists them with their sources."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "optioned_plugin.py").write_text(_OPTIONED_PLUGIN)
    info = site / "optioned_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: optioned-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[executors]\noptioned = optioned_plugin\n")
    project = tmp_path / "project"
    project.mkdir()
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[tool.executors.optioned]\ntoken = "from-pyproject"\n')
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "EXECUTORS_OPTIONED__LAG": "0.5"}

    result = _run(
        *("-m", "executors", "check", "optioned", "--json", "--set", "optioned.label=from-set"),
        env=env,
        cwd=project,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    start, *_, end = _lines(result.stdout)
    assert start["options"] == [
        {
            "key": "optioned.token",
            "value": "from-pyproject",
            "source": f"pyproject.toml [tool.executors.optioned] ({pyproject.resolve()})",
        },
        {"key": "optioned.lag", "value": 0.5, "source": "env EXECUTORS_OPTIONED__LAG"},
        {"key": "optioned.label", "value": "from-set", "source": "override"},
    ]
    assert end["ok"] is True
    assert sorted(path.name for path in project.iterdir()) == ["pyproject.toml"]


def test_the_pytest_plugin_runs_the_suite_from_the_installed_package() -> None:
    result = _run(
        "-m",
        "pytest",
        "--pyargs",
        "executors.testing.conformance",
        "--executors-backend",
        "coroutine",
        "-p",
        "no:cacheprovider",
        "-q",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "21 passed, 9 skipped" in result.stdout


def test_without_a_backend_the_suite_is_skipped_with_a_reason() -> None:
    result = _run(
        "-m", "pytest", "--pyargs", "executors.testing.conformance", "-p", "no:cacheprovider", "-rs"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass --executors-backend NAME" in result.stdout


def test_rules_are_numbered_in_order_with_matching_test_methods() -> None:
    from executors.testing.conformance import BackendConformance

    for prefix, level in (("EX", "pool"), ("SL", "slot")):
        ids = [r.id for r in RULES if r.level == level]
        assert ids == [f"{prefix}-{i}" for i in range(1, len(ids) + 1)]
    for rule in RULES:
        assert callable(getattr(BackendConformance, rule.test_name))
        assert rule.promise, f"{rule.id} names no promise of the contract"
    # pytest runs them in the order they are defined: the verdicts come in RULES' order
    defined = [name for name in vars(BackendConformance) if name.startswith("test_")]
    assert defined == [rule.test_name for rule in RULES]


def test_check_without_pytest_says_to_install_the_testing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from executors._cli import main

    monkeypatch.setitem(sys.modules, "pytest", None)  # `import pytest` raises ImportError
    assert main(["check", "coroutine"]) == 2
    assert "install executors-core[testing]" in capsys.readouterr().err


_BROKEN_PLUGIN = """
import executors
from executors_coroutine._backend import CoroutineBackend

from tests.test_broken_backends import BrokenBackend, HangsOnSetupFailure, StaleOutcome


@executors.hookimpl
def executors_register_backends(register):
    register(BrokenBackend("broken-setup", CoroutineBackend(), HangsOnSetupFailure))
    register(BrokenBackend("broken-stale", CoroutineBackend(), StaleOutcome))
"""


@pytest.fixture
def broken_plugin(tmp_path: Path) -> dict[str, str]:
    """The environment of a process where a distribution installed beside executors
    (a module and its dist-info with an entry point) registers two broken backends."""
    (tmp_path / "broken_plugin.py").write_text(_BROKEN_PLUGIN)
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[executors]\nbroken-setup = broken_plugin\nbroken-stale = broken_plugin\n"
    )
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(tmp_path), str(root), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_check_of_a_broken_installed_backend_fails_naming_the_rule(
    broken_plugin: dict[str, str],
) -> None:
    """A backend whose start() hangs when its setup raises."""
    result = _run("-m", "executors", "check", "broken-setup", "--json", env=broken_plugin)
    assert result.returncode == 1, result.stdout + result.stderr
    *rules, end = _lines(result.stdout)
    rows = {row["id"]: row for row in rules if row["event"] == "rule"}
    assert end["ok"] is False
    assert rows["EX-2"]["status"] == "failed"
    assert "EX-2 acquisition_never_hangs: " in rows["EX-2"]["detail"]
    assert "InjectedFault" in rows["EX-2"]["detail"]
    # SL-2 checks the same promise on a bare executor: start() must raise
    others = {r: row["status"] for r, row in rows.items() if r not in ("EX-2", "SL-2")}
    assert set(others.values()) <= {"passed", "skipped"}, others


def test_a_state_machine_failure_comes_with_the_steps_of_its_run(
    broken_plugin: dict[str, str],
) -> None:
    """A backend that answers each job with the outcome of the job before it: the line
    of a state machine that caught it carries the steps of the failing run, and every
    rule its timing. (The pool machine, EX-1, catches it once a run sends two jobs to one
    executor, which most runs do; the slot machine, SL-13, drives one executor.)"""
    result = _run(
        "-m", "executors", "check", "broken-stale", "--json", "--profile", "ci", env=broken_plugin
    )
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {row["id"]: row for row in _lines(result.stdout) if row["event"] == "rule"}
    machines = [
        rows[rule_id] for rule_id in ("EX-1", "SL-13") if rows[rule_id]["status"] == "failed"
    ]
    assert machines, "neither state machine caught the stale outcomes"
    for row in machines:
        assert "invariant outcomes_match_jobs" in row["detail"], row["detail"]
        assert row["example"][0].startswith("open(host="), row["example"]
        assert any(step.startswith("submit(") for step in row["example"]), row["example"]
    for row in rows.values():
        assert row["seconds"] >= 0
        assert row["deadline"] > 0 or row["status"] == "skipped", row


def test_a_checker_killed_from_outside_leaves_every_finished_rules_verdict() -> None:
    """Each verdict is written the moment its rule ends: the lines read before the
    checker is killed are whole, in order, one per finished rule."""
    checker = subprocess.Popen(
        [sys.executable, "-m", "executors", "check", "coroutine", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert checker.stdout is not None
    try:
        lines: list[dict[str, Any]] = []
        while len(lines) < 5:  # the start line and four rules
            line = checker.stdout.readline()
            assert line, "the checker ended before four rules had ended"
            lines.append(json.loads(line))
    finally:
        checker.kill()
        checker.wait(timeout=TIMEOUT)
        checker.stdout.close()
    assert lines[0]["event"] == "start"
    assert [line["id"] for line in lines[1:]] == ["EX-1", "EX-2", "EX-3", "EX-4"]
    assert all(line["status"] in ("passed", "skipped") for line in lines[1:])


class TestTheDocsExampleBackendConforms(BackendConformance):
    """The complete backend of docs/writing-a-backend.md (``to-thread``) keeps every
    promise that applies to it: the guide shows a backend that passes the suite."""

    backend = "to-thread"

    def registry(self) -> Registry:
        import examples.docs_backend

        registry = Registry.empty()
        registry.register_plugin(examples.docs_backend)
        return registry
