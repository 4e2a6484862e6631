"""The ``executors`` command line: ``backends``, ``config``, ``run`` and ``check``.

Reports are rich tables on stdout; ``--json`` prints plain JSON instead, for scripts.
The progress bar and log messages go to stderr. A mistake the user can fix (a
configuration, entrypoint or backend error) prints ``error: <message>`` on stderr and
exits with status 2, never with a traceback.

``run`` handles SIGINT and SIGTERM itself (the library's ``open_pool`` never installs a
signal handler): the first drains the pool, the second cancels what still runs.

This module only parses: it imports the standard library's argparse and json, so that
``executors --help`` and a usage error are quick. What the commands do is in
``_commands``, imported once the arguments are known.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
#: ``run``: some job failed; ``backends``: no backend is installed
EXIT_FAILED = 1
#: a usage, configuration, entrypoint or backend error
EXIT_ERROR = 2
#: ``run``: a second SIGINT cut the drain short (128 + SIGINT, as shells report it);
#: a second SIGTERM exits with 128 + SIGTERM = 143
EXIT_INTERRUPTED = 130
#: the exit status after standard output was closed early (`executors config | head`):
#: 128 + SIGPIPE, as a program killed by that signal would have
EXIT_BROKEN_PIPE = 141
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# -- argument parsing ----------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        msg = f"expected KEY=VALUE (such as idle_executors=4), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return key.strip(), value


def _positive_int(text: str) -> int:
    if not text.strip().isdecimal() or int(text) < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


class Payload:
    """The ``--payload`` value, boxed so that ``--payload null`` differs from no option."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def _json_payload(text: str) -> Payload:
    try:
        return Payload(json.loads(text))
    except json.JSONDecodeError as err:
        msg = f"not valid JSON ({err}): {text!r}"
        raise argparse.ArgumentTypeError(msg) from err


def _config_options() -> argparse.ArgumentParser:
    """The options every command that loads the configuration takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--set",
        dest="settings",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        default=[],
        help="override a setting (repeatable); KEY is a setting or BACKEND.OPTION, VALUE "
        "is text converted as for EXECUTORS_* variables",
    )
    parent.add_argument(
        "--dir",
        type=Path,
        metavar="PATH",
        help="read pyproject.toml and executors.toml from PATH (default: the current directory)",
    )
    return parent


def _add_backends_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backends",
        help="list installed backends and plugins that failed to load",
        description="List the installed backends, the plugins, and the plugins that "
        "failed to load or were left out. Exits 1 when no backend is installed.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--traceback", action="store_true", help="print the traceback of each broken plugin"
    )
    parser.set_defaults(command="backends")


def _add_config_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "config",
        parents=[parent],
        help="show the effective configuration and where each value comes from",
        description="Show every setting with its value and its source: default, "
        "pyproject.toml, executors.toml, an EXECUTORS_* variable, or override (--set).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(command="config")


def _add_run_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "run",
        parents=[parent],
        help="run jobs on a pool and summarize their outcomes",
        description="Open a pool, run jobs of ENTRYPOINT on it (--jobs of them, or one a "
        "line of --input), write their outcomes (--output) and print a summary, then the "
        "tracebacks of the first failed jobs. "
        "The current directory is put first on sys.path, as `python -m` does, so "
        "ENTRYPOINT and --setup may name modules of the project you run it from. "
        "Exits 0 when every job succeeded, 1 when some failed, 2 on a configuration, "
        "entrypoint, input or backend error, 141 when the reader of --output went away. "
        "The first SIGINT (Ctrl-C) or SIGTERM stops "
        "submitting jobs and drains the pool (drain_timeout); a second one cancels the "
        "running jobs and exits with 128 + the signal's number (130, 143).",
    )
    parser.add_argument(
        "entrypoint",
        metavar="ENTRYPOINT",
        nargs="?",
        help="the job function, module:function (default: the configured entrypoint)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="how many jobs (default: 1; with --input, every line)",
    )
    payloads = parser.add_mutually_exclusive_group()
    payloads.add_argument(
        "--payload",
        type=_json_payload,
        metavar="JSON",
        help="the payload of every job (default: job i gets the integer i)",
    )
    payloads.add_argument(
        "--input",
        metavar="FILE",
        help="JSON Lines: one job per line, the line its payload ('-': standard input)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write each job's outcome as a line of JSON, as it ends ('-': standard "
        "output; the summary then goes to standard error)",
    )
    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        type=str.upper,
        metavar="LEVEL",
        help="show log records of this level and above, the jobs' own included: "
        f"{', '.join(_LOG_LEVELS)} (default: WARNING, and only the library's)",
    )
    parser.add_argument(
        "--tracebacks",
        type=int,
        default=3,
        metavar="K",
        help="print the remote tracebacks of the first K failed jobs (default: 3)",
    )
    parser.add_argument("--setup", metavar="REF", help="setup function, module:function")
    parser.add_argument("--backend", metavar="NAME", help="see `executors backends`")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="K",
        help="jobs submitted but not finished, at most (default: 2 * max_executors)",
    )
    parser.add_argument(
        "--host-loop",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="event loop the pool runs in (default: asyncio)",
    )
    parser.add_argument("--quiet", action="store_true", help="show no progress bar")
    parser.set_defaults(command="run")


def _add_check_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "check",
        parents=[parent],
        help="run the conformance suite against a backend",
        description="Run the conformance suite (docs/conformance.md) against the installed "
        "backend NAME, on bare executors and through real pools, and print one row per "
        "rule as it ends: passed, failed (with the start of the failure) or skipped (with "
        "why). The pools get NAME's options from the configuration, as `executors run` "
        "reads them ([tool.executors.NAME] in pyproject.toml, [NAME] in executors.toml, "
        "EXECUTORS_NAME__OPTION, --set NAME.OPTION=VALUE); pool settings are the suite's "
        "own. Exits 0 when no rule failed, 1 when one did or --timeout was reached, 2 for "
        "an unknown backend, invalid options, or when pytest and Hypothesis (the "
        "executors-core[testing] extra) are not installed.",
    )
    parser.add_argument("backend", metavar="NAME", help="see `executors backends`")
    parser.add_argument(
        "--profile",
        choices=["quick", "ci", "thorough"],
        default="quick",
        help="how many random programs to try (default: quick)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines instead of a table: one per rule as it ends, then a verdict",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help="stop after this long: the rule still running fails, the rest are not run "
        "(default: 300 quick, 600 ci, 3600 thorough)",
    )
    parser.set_defaults(command="check")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="executors", description="Run jobs on pluggable executors through a pool."
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    parent = _config_options()
    _add_backends_command(commands)
    _add_config_command(commands, parent)
    _add_run_command(commands, parent)
    _add_check_command(commands, parent)
    return parser


# -- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit
    status: 0 success, 1 failed jobs (or no backend), 2 usage or configuration error,
    130 (143) when a second SIGINT (SIGTERM) cut the drain of ``run`` short, 141 when
    the reader of standard output went away."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits after --help (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    from . import _commands

    return _commands.run(args)
