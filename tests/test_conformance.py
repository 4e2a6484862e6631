"""The conformance suite against every in-repo backend, through `executors check` and
through the pytest plugin, each in a subprocess (pytest does not nest well)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from executors.testing.conformance import RULES, RULES_VERSION, Rule
from executors.testing.conformance import rule as rule_with_id

TIMEOUT = 120.0


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


def _check(backend: str) -> subprocess.CompletedProcess[str]:
    # The table is as wide as the terminal (80 columns through a pipe), wrapping long
    # details onto a second line: wide enough here that each rule's row is one line.
    env = {**os.environ, "COLUMNS": "200"}
    return _run("-m", "executors", "check", backend, "--profile", "quick", env=env)


def _row(stdout: str, rule: Rule) -> str:
    rows = [line for line in stdout.splitlines() if f" {rule.id} " in line]
    assert rows, f"no row for {rule.id} in:\n{stdout}"
    return rows[0]


# oneshot: the example third-party distribution under examples/backend-plugin
@pytest.mark.parametrize("backend", ["coroutine", "thread", "process", "oneshot"])
def test_check_passes_every_rule_on_each_in_repo_backend(backend: str) -> None:
    result = _check(backend)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in RULES:
        row = _row(result.stdout, rule)
        assert rule.name in row
        assert " passed " in row or " skipped " in row, row
    assert f"rules version {RULES_VERSION}" in result.stdout
    if backend == "coroutine":  # EX-6: a coroutine cannot isolate a crash
        assert "requires capability" in _row(result.stdout, RULES[5])
    # A rule for a capability applies to the backends that declare it, and only to them.
    for rule_id, capability, declared_by in (
        ("EX-11", "cheap_kill", ("coroutine", "process")),
        ("EX-12", "cancel_by_task", ("thread",)),
        ("EX-13", "hands_over_at_once", ("thread", "process")),
    ):
        row = _row(result.stdout, rule_with_id(rule_id))
        if backend in declared_by:
            assert " passed " in row, row
        else:
            assert " skipped " in row, row
            assert f"requires capability {capability}" in row, row


def test_check_of_an_unknown_backend_exits_2_listing_the_installed_ones() -> None:
    result = _check("nosuch")
    assert result.returncode == 2
    assert "unknown backend 'nosuch'" in result.stderr
    for name in ("coroutine", "process", "thread"):
        assert name in result.stderr


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
    assert "9 passed, 4 skipped" in result.stdout


def test_without_a_backend_the_suite_is_skipped_with_a_reason() -> None:
    result = _run(
        "-m", "pytest", "--pyargs", "executors.testing.conformance", "-p", "no:cacheprovider", "-rs"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass --executors-backend NAME" in result.stdout


def test_rules_are_numbered_in_order_with_matching_test_methods() -> None:
    from executors.testing.conformance import BackendConformance

    assert [r.id for r in RULES] == [f"EX-{i}" for i in range(1, len(RULES) + 1)]
    for rule in RULES:
        assert callable(getattr(BackendConformance, rule.test_name))


def test_check_without_pytest_says_to_install_the_testing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from executors._cli import main

    monkeypatch.setitem(sys.modules, "pytest", None)  # `import pytest` raises ImportError
    assert main(["check", "coroutine"]) == 2
    assert "install executors[testing]" in capsys.readouterr().err


def test_check_json_is_one_document_with_a_row_per_rule() -> None:
    import json

    result = _run("-m", "executors", "check", "coroutine", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # pytest's own report went to stderr
    assert report["ok"] is True
    assert report["rules_version"] == RULES_VERSION
    assert [row["id"] for row in report["rules"]] == [rule.id for rule in RULES]
    statuses = {row["id"]: row["status"] for row in report["rules"]}
    assert statuses["EX-6"] == "skipped"  # a coroutine cannot isolate a crash
    assert statuses["EX-1"] == "passed"
    assert statuses["EX-11"] == "passed"  # its kills are cheap
    assert statuses["EX-12"] == "skipped"  # it keeps a scope: its kills end runs instead
    assert statuses["EX-13"] == "skipped"  # it runs each job in its caller's task


_BROKEN_PLUGIN = """
import executors
from executors_coroutine._backend import CoroutineBackend

from tests.test_broken_backends import BrokenBackend, HangsOnSetupFailure


@executors.hookimpl
def executors_register_backends(register):
    register(BrokenBackend("broken-setup", CoroutineBackend(), HangsOnSetupFailure))
"""


def test_check_of_a_broken_installed_backend_fails_naming_the_rule(tmp_path: Path) -> None:
    """A distribution installed beside executors (a module and its dist-info with an
    entry point) registers a backend whose start() hangs when its setup raises."""
    import json
    import os

    (tmp_path / "broken_plugin.py").write_text(_BROKEN_PLUGIN)
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[executors]\nbroken-setup = broken_plugin\n")
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(tmp_path), str(root), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "executors", "check", "broken-setup", "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    rows = {row["id"]: row for row in report["rules"]}
    assert report["ok"] is False
    assert rows["EX-2"]["status"] == "failed"
    assert "EX-2 acquisition_never_hangs: " in rows["EX-2"]["detail"]
    assert "InjectedFault" in rows["EX-2"]["detail"]
    others = {rule_id: row["status"] for rule_id, row in rows.items() if rule_id != "EX-2"}
    assert set(others.values()) <= {"passed", "skipped"}, others
