"""The ``executors`` command line, called in-process through ``main(argv)``; one test runs
the real ``python -m executors`` in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from executors import Registry, hookimpl
from executors._check import Reporter
from executors._cli import main
from executors._config import ConfigRow
from executors.testing.conformance import RULES, RULES_VERSION
from executors_coroutine import CoroutineBackend

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from executors import Backend

DEMO = ["--setup", "examples.demo:load_model", "--set", "max_executors=4", "--quiet"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No config file or EXECUTORS_* variable of the caller's applies, and `run`'s
    insertion of the working directory into sys.path is undone after each test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [name for name in os.environ if name.startswith("EXECUTORS_")]:
        monkeypatch.delenv(name)


class BrokenPlugin:
    @hookimpl
    def executors_register_backends(self, register: Callable[[Backend], None]) -> None:
        raise RuntimeError("the plugin's own bug")


def use_registry(monkeypatch: pytest.MonkeyPatch, registry: Registry) -> None:
    monkeypatch.setattr("executors._commands.default_registry", lambda: registry)


def use_coroutine_and_plugin(
    monkeypatch: pytest.MonkeyPatch, plugin: object, name: str, distribution: str, version: str
) -> None:
    """The CLI sees the coroutine backend and ``plugin``, registered by ``distribution``."""
    registry = Registry.empty()
    registry.add_backend(CoroutineBackend(), distribution="executors-coroutine", version="0.1.0")
    registry.register_plugin(plugin, name, distribution=distribution, version=version)
    use_registry(monkeypatch, registry)


# -- backends --------------------------------------------------------------------------------


def test_backends_lists_coroutine_with_its_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "coroutine" in out
    assert "executors-coroutine" in out
    assert "setup-per-pool" in out


def test_backends_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (coroutine,) = [b for b in document["backends"] if b["name"] == "coroutine"]
    assert coroutine["distribution"] == "executors-coroutine"
    assert coroutine["capabilities"]["async_entrypoints"] is True
    assert coroutine["capabilities"]["sync_entrypoints"] is False


def test_backends_reports_broken_plugins_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_coroutine_and_plugin(monkeypatch, BrokenPlugin(), "broken", "broken-dist", "9.9")
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "Broken plugins" in out
    assert "broken-dist" in out
    assert "register_backends" in out
    assert "RuntimeError" in out  # the table may wrap the rest of the message
    assert main(["backends", "--traceback"]) == 0
    assert "RuntimeError: the plugin's own bug" in capsys.readouterr().out
    assert main(["backends", "--json"]) == 0
    (broken,) = json.loads(capsys.readouterr().out)["broken"]
    assert broken["plugin"] == "broken"
    assert broken["error"] == "RuntimeError: the plugin's own bug"
    assert "Traceback" in broken["traceback"]


class Unmarked:
    """A plugin whose hook lacks the hookimpl marker: it implements no hook."""

    def executors_register_backends(self, register: Callable[[Backend], None]) -> None:
        raise AssertionError("never called")


def test_backends_lists_a_plugin_that_implements_no_hook_as_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_coroutine_and_plugin(monkeypatch, Unmarked(), "unmarked", "unmarked-dist", "1.0")
    assert main(["backends", "--json"]) == 0
    (broken,) = json.loads(capsys.readouterr().out)["broken"]
    assert (broken["plugin"], broken["distribution"], broken["kind"]) == (
        "unmarked",
        "unmarked-dist",
        "no_hooks",
    )
    assert "executors_register_backends is not marked with @executors.hookimpl" in broken["error"]
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "Broken plugins" in out
    assert "unmarked-dist" in out
    assert "no_hooks" in out


def test_backends_exits_1_when_none_is_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_registry(monkeypatch, Registry.empty())
    assert main(["backends"]) == 1
    assert "no backend is installed" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_prints_the_distributions_version(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    assert main([flag]) == 0
    assert capsys.readouterr().out == f"executors {importlib.metadata.version('executors-core')}\n"


def test_help_and_usage_errors_import_neither_the_library_nor_rich_nor_anyio() -> None:
    # What keeps `executors --help` quick (about 0.05 s): the commands' code, and what it
    # imports, loads only once a command runs.
    code = (
        "import sys\n"
        "from executors._cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['run', '--jobs', 'x']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('anyio', 'rich', 'attrs', 'executors._pool', 'executors._config')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout


# -- config ------------------------------------------------------------------------------------


def test_config_shows_the_source_of_each_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "executors.toml").write_text("idle_executors = 2\n")
    monkeypatch.setenv("EXECUTORS_JOB_TIMEOUT", "30")
    assert main(["config", "--set", "max_executors=8", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["idle_executors"]["value"] == 2
    assert rows["idle_executors"]["source"] == f"executors.toml ({tmp_path / 'executors.toml'})"
    assert rows["job_timeout"] == {
        "key": "job_timeout",
        "value": 30.0,
        "source": "env EXECUTORS_JOB_TIMEOUT",
    }
    assert rows["max_executors"]["source"] == "override"
    assert rows["backend"]["source"] == "default"
    assert main(["config", "--set", "max_executors=8"]) == 0
    out = capsys.readouterr().out
    assert "override" in out
    assert "env EXECUTORS_JOB_TIMEOUT" in out


def test_config_shows_every_option_of_the_backend_with_its_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["config", "--set", "backend=thread", "--set", "thread.loop=trio", "--json"]
    assert main(argv) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["thread.loop"] == {"key": "thread.loop", "value": "trio", "source": "override"}
    assert main(["config", "--set", "backend=process", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    options = [key for key in rows if key.startswith("process.")]
    assert options == [
        "process.start_method",
        "process.high_ping_threshold",
        "process.recycle_memory_mb",
        "process.keep_freed_mb",
    ]
    assert rows["process.keep_freed_mb"] == {
        "key": "process.keep_freed_mb",
        "value": 256,
        "source": "default",
    }


def test_config_reads_the_directory_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.executors]\nmax_executors = 3\n")
    assert main(["config", "--dir", str(project), "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["max_executors"]["value"] == 3
    assert rows["max_executors"]["source"].startswith("pyproject.toml [tool.executors]")


def test_config_error_names_file_and_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "executors.toml").write_text("max_executors = 0\n")
    assert main(["config"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: executors.toml")
    assert "max_executors = 0 is invalid" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_an_unknown_env_variable_is_a_warning_on_stderr_not_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXECUTORS_HOME", "/opt")
    monkeypatch.setenv("EXECUTORS_MAX_EXECUTOR", "3")
    assert main(["config", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "warning: env EXECUTORS_HOME: home = '/opt' is ignored: unknown variable; pool "
        "options are EXECUTORS_<OPTION> (such as EXECUTORS_IDLE_EXECUTORS), backend "
        "options EXECUTORS_<BACKEND>__<OPTION>",
        "warning: env EXECUTORS_MAX_EXECUTOR: max_executor = '3' is ignored: unknown "
        "variable; did you mean 'EXECUTORS_MAX_EXECUTORS'?",
    ]
    rows = {row["key"]: row for row in json.loads(captured.out)}
    assert rows["max_executors"]["source"] == "default"


def test_config_rejects_a_bad_set_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "max_executors=many"]) == 2
    assert "error: override: max_executors = 'many' is invalid" in capsys.readouterr().err


def test_malformed_set_is_a_usage_error_naming_the_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--set", "max_executors"]) == 2
    assert "argument --set: expected KEY=VALUE" in capsys.readouterr().err


# -- run -------------------------------------------------------------------------------------


def test_run_demo_succeeds_and_summarizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples.demo:work", "--jobs", "20", *DEMO]) == 0
    out = capsys.readouterr().out
    assert "20 ok, 0 failed" in out
    assert "p50" in out
    assert "p99" in out
    assert "jobs/s" in out
    assert "0 spawn failures" in out


def test_run_with_bounded_concurrency_under_trio(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "examples.demo:work", "--jobs", "7", "--concurrency", "2", "--host-loop", "trio"]
    assert main([*argv, *DEMO]) == 0
    assert "7 ok, 0 failed" in capsys.readouterr().out


def test_run_shows_progress_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "examples.demo:work", "--jobs", "3", "--setup", "examples.demo:load_model"]
    assert main(argv) == 0
    assert "3/3" in capsys.readouterr().err


def test_run_with_failures_exits_1_and_groups_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples.demo:flaky", "--jobs", "20", *DEMO]) == 1
    out = capsys.readouterr().out
    assert "18 ok, 2 failed" in out
    assert "2 raised" in out
    assert "ValueError: payload 0 is divisible by 10" in out


def test_run_counts_jobs_a_full_pool_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "examples.demo:work", "--jobs", "3", "--set", "when_full=reject"]
    assert main([*argv, "--set", "max_pending=0", *DEMO]) == 1
    out = capsys.readouterr().out
    assert "0 ok, 3 failed" in out
    assert "3 rejected" in out


def test_run_gives_every_job_the_payload(capsys: pytest.CaptureFixture[str]) -> None:
    # Payload 10 makes flaky raise: every job must have received it.
    assert main(["run", "examples.demo:flaky", "--jobs", "3", "--payload", "10", *DEMO]) == 1
    assert "0 ok, 3 failed" in capsys.readouterr().out


def test_run_rejects_a_payload_that_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples.demo:work", "--payload", "{oops"]) == 2
    assert "argument --payload: not valid JSON" in capsys.readouterr().err


def test_run_unknown_backend_exits_2_listing_the_installed_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "examples.demo:work", "--backend", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert (
        "error: unknown backend 'nosuch' (backend = 'nosuch' from --backend on the command "
        "line): installed backends are"
    ) in err
    assert "coroutine" in err


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("pyproject.toml", "pyproject.toml [tool.executors] ({dir}/pyproject.toml)"),
        ("executors.toml", "executors.toml ({dir}/executors.toml)"),
        ("env", "env EXECUTORS_BACKEND"),
        ("--set", "--set on the command line"),
    ],
)
@pytest.mark.parametrize("command", [["run", "examples.demo:work"], ["config"]])
def test_an_unknown_backend_names_where_its_name_came_from(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    where: str,
    source: str,
) -> None:
    args = command
    if where == "pyproject.toml":
        (tmp_path / "pyproject.toml").write_text('[tool.executors]\nbackend = "proces"\n')
    elif where == "executors.toml":
        (tmp_path / "executors.toml").write_text('backend = "proces"\n')
    elif where == "env":
        monkeypatch.setenv("EXECUTORS_BACKEND", "proces")
    else:
        args = [*args, "--set", "backend=proces"]
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = source.format(dir=tmp_path)
    assert err.startswith(f"error: unknown backend 'proces' (backend = 'proces' from {expected}): ")
    assert "(did you mean 'process'?)" in err


def test_an_unknown_default_backend_says_how_to_choose_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry.empty()
    registry.add_backend(CoroutineBackend())
    use_registry(monkeypatch, registry)
    assert main(["config"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown backend 'process' (backend = 'process' by default; set backend in "
        "pyproject.toml [tool.executors], executors.toml or EXECUTORS_BACKEND to choose "
        "another): installed backends are coroutine\n"
    )


def test_run_unimportable_entrypoint_exits_2_naming_the_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "nosuchmodule:f"]) == 2
    captured = capsys.readouterr()
    assert "cannot import module 'nosuchmodule'" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_run_sync_function_on_coroutine_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples.demo:work_sync", "--backend", "coroutine"]) == 2
    err = capsys.readouterr().err
    assert "is a sync function, but backend 'coroutine' runs only async functions" in err


def test_run_imports_entrypoints_from_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "local_jobs.py").write_text("async def double(ctx):\n    return 2 * ctx.payload\n")
    try:
        assert main(["run", "local_jobs:double", "--jobs", "2", "--quiet"]) == 0
    finally:
        sys.modules.pop("local_jobs", None)
    assert "2 ok, 0 failed" in capsys.readouterr().out


def test_run_reads_json_lines_and_writes_each_outcome_as_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("3\n\n10\n{oops\n7\n")  # a blank line, and one that is no JSON
    written = tmp_path / "out.jsonl"
    argv = ["run", "examples.demo:flaky", "--input", str(source), "--output", str(written)]
    assert main([*argv, *DEMO]) == 1
    records = sorted(
        (json.loads(line) for line in written.read_text().splitlines()), key=lambda r: r["line"]
    )
    assert [(r["line"], r["status"], r.get("reason")) for r in records] == [
        (1, "succeeded", None),
        (3, "failed", "raised"),
        (4, "failed", "invalid_input"),
        (5, "succeeded", None),
    ]
    assert records[0]["value"]["payload"] == 3
    assert "ValueError: payload 10 is divisible by 10" in records[1]["error"]["traceback"]
    assert records[2]["error"]["message"].startswith(f"{source}:4: not JSON")
    captured = capsys.readouterr()
    assert "2 ok, 2 failed" in captured.out
    # the remote traceback of the job that raised, on stderr, then the rest counted
    assert "job pool" in captured.err
    assert 'in flaky\n    raise ValueError(f"payload' in captured.err
    assert "... and 1 more failed job\n" in captured.err


def test_run_reads_standard_input_and_writes_standard_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n2\n3\n"))
    assert (
        main(["run", "examples.demo:work", "--input", "-", "--output", "-", "--jobs", "2", *DEMO])
        == 0
    )
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(r["value"]["payload"] for r in records) == [1, 2]  # --jobs 2: two lines
    assert "2 ok, 0 failed" in captured.err  # the summary keeps off the JSON


def test_run_takes_the_entrypoint_from_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "executors.toml").write_text('entrypoint = "examples.demo:work"\n')
    assert main(["run", "--jobs", "2", *DEMO]) == 0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    (tmp_path / "executors.toml").unlink()
    assert main(["run", "--jobs", "2", *DEMO]) == 2
    assert "error: no entrypoint: give one" in capsys.readouterr().err


def test_run_with_an_input_that_cannot_be_opened_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["run", "examples.demo:work", "--input", str(missing), *DEMO]) == 2
    assert f"error: cannot open --input {missing}: No such file or directory" in (
        capsys.readouterr().err
    )


def test_run_log_level_shows_the_jobs_own_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logging_jobs.py").write_text(
        "import logging\n\nasync def job(ctx):\n"
        "    logging.getLogger('logging_jobs').info('job %s says hello', ctx.payload)\n"
    )
    try:
        argv = ["run", "logging_jobs:job", "--jobs", "1", "--quiet"]
        assert main([*argv, "--log-level", "info"]) == 0
        assert "job 0 says hello" in capsys.readouterr().err
        assert main(argv) == 0
        assert "says hello" not in capsys.readouterr().err  # WARNING and above by default
    finally:
        sys.modules.pop("logging_jobs", None)


class _ClosedPipe(io.StringIO):
    """Standard output whose reader went away (`executors config --json | head -1`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_standard_output_ends_a_command_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stdout", _ClosedPipe())
        assert main(["config", "--json"]) == 141
    assert capsys.readouterr().err == ""


def test_run_stops_submitting_once_the_reader_of_its_output_goes_away() -> None:
    # Far more output than a pipe holds: the reader leaves after one line.
    command = [
        *[sys.executable, "-m", "executors", "run", "executors.testing:aecho"],
        *["--backend", "coroutine", "--jobs", "200000", "--output", "-", "--quiet"],
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        assert json.loads(child.stdout.readline())["status"] == "succeeded"
        child.stdout.close()
        err = child.stderr.read().decode()
        assert child.wait(timeout=60) == 141, err
    assert "the reader of --output went away: stopped submitting jobs" in err
    assert "Traceback" not in err


# -- check -----------------------------------------------------------------------------------
# These stop before any rule runs; tests/test_conformance.py runs the checker itself.


def test_check_of_an_unknown_backend_says_it_came_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "proces"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: unknown backend 'proces' (backend = 'proces' from the command line): "
        "installed backends are "
    )


@pytest.mark.parametrize(
    ("where", "setting", "error"),
    [
        (
            "pyproject.toml",
            "[tool.executors.coroutine]\nloop_lag_intervl = 0.5\n",
            "error: pyproject.toml [tool.executors.coroutine] ({dir}/pyproject.toml): "
            "coroutine.loop_lag_intervl = 0.5 is invalid: unknown key; did you mean "
            "'coroutine.loop_lag_interval'?",
        ),
        (
            "executors.toml",
            '[coroutine]\nloop_lag_interval = "soon"\n',
            "error: executors.toml [coroutine] ({dir}/executors.toml): "
            "coroutine.loop_lag_interval = 'soon' is invalid: expected a number",
        ),
        (
            "env",
            "EXECUTORS_COROUTINE__LOOP_LAG_INTERVAL=-1",
            "error: env EXECUTORS_COROUTINE__LOOP_LAG_INTERVAL: "
            "coroutine.loop_lag_interval = '-1' is invalid: 'loop_lag_interval' must be > 0.0",
        ),
        (
            "--set",
            "coroutine.loop_lag_warn=often",
            "error: override: coroutine.loop_lag_warn = 'often' is invalid: expected a number",
        ),
    ],
)
def test_check_refuses_invalid_backend_options_as_run_does(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    setting: str,
    error: str,
) -> None:
    extra = []
    if where == "env":
        name, _, value = setting.partition("=")
        monkeypatch.setenv(name, value)
    elif where == "--set":
        extra = ["--set", setting]
    else:
        (tmp_path / where).write_text(setting)

    assert main(["check", "coroutine", *extra]) == 2
    checked = capsys.readouterr()
    assert main(["run", "examples.demo:work", "--backend", "coroutine", *extra]) == 2
    ran = capsys.readouterr()

    assert checked.err.startswith(error.format(dir=tmp_path)), checked.err
    assert checked.err == ran.err
    assert checked.err.count("\n") == 1  # one line: no traceback
    assert checked.out == ""


def _reporter(as_json: bool, options: list[ConfigRow]) -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    return Reporter("coroutine", "quick", out, as_json, RULES, options), out


OPTIONS = [
    ConfigRow("coroutine.loop_lag_warn", 2.0, "env EXECUTORS_COROUTINE__LOOP_LAG_WARN"),
    ConfigRow("coroutine.loop_lag_interval", 0.2, "override"),
]


def test_check_names_the_options_it_checks_with_their_sources() -> None:
    reporter, out = _reporter(False, OPTIONS)
    reporter.begin(RULES_VERSION, 300)
    assert out.getvalue().splitlines()[1:] == [
        "Backend options:",
        "  coroutine.loop_lag_warn = 2.0 (from env EXECUTORS_COROUTINE__LOOP_LAG_WARN)",
        "  coroutine.loop_lag_interval = 0.2 (from override)",
    ]
    reporter, out = _reporter(False, [])
    reporter.begin(RULES_VERSION, 300)
    assert out.getvalue().splitlines()[1:] == ["Backend options: none set (the backend's defaults)"]


def test_check_json_start_record_lists_the_options() -> None:
    reporter, out = _reporter(True, OPTIONS)
    reporter.begin(RULES_VERSION, 300)
    start = json.loads(out.getvalue())
    assert start["event"] == "start"
    assert start["options"] == [
        {
            "key": "coroutine.loop_lag_warn",
            "value": 2.0,
            "source": "env EXECUTORS_COROUTINE__LOOP_LAG_WARN",
        },
        {"key": "coroutine.loop_lag_interval", "value": 0.2, "source": "override"},
    ]


# -- the installed command -------------------------------------------------------------------


def test_python_dash_m_executors_backends() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "executors", "backends"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "coroutine" in result.stdout
    assert "executors-coroutine" in result.stdout
