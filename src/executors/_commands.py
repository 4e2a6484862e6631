"""What the ``executors`` commands do, once ``_cli`` has parsed their arguments: the
library, rich and anyio are imported here only, so that ``executors --help`` and a
usage error cost none of them."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections import Counter
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ._cli import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Payload,
)
from ._config import ConfigRow, load_config, typed_backend_options
from ._exceptions import ConfigWarning, ExecutorsError, PoolClosed, PoolFull
from ._plugins import default_registry
from ._pool import open_pool

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
    from typing import IO

    from anyio.abc import TaskGroup

    from ._config import LoadedConfig
    from ._executor import Capabilities
    from ._job import JobOutcome, RemoteError
    from ._plugins import Registry
    from ._pool import Pool, PoolStatistics

# Labels of the Capabilities fields in `executors backends`, in display order. A field
# missing here is still shown, under its own name.
_CAPABILITY_LABELS = {
    "async_entrypoints": "async",
    "sync_entrypoints": "sync",
    "can_kill_running_job": "kill",
    "measures_memory": "memory",
    "isolates_crashes": "crash-isolated",
    "reusable": "reusable",
    "remote": "remote",
    "setup_per_pool": "setup-per-pool",
}
# Failures that are no FailureReason: submit() refused the job (when_full = "reject").
_REJECTED = "rejected"
# ... and a line of --input that is no JSON.
_INVALID_INPUT = "invalid_input"
_PROGRESS_REFRESH = 0.1  # seconds between redraws of the progress bar

# -- output ---------------------------------------------------------------------------------


def _error(message: str) -> None:
    # Plain text, not rich: a message must reach logs and tests unwrapped and unstyled.
    print(f"error: {message}", file=sys.stderr)


@contextmanager
def _config_warnings_shown() -> Iterator[None]:
    """Configuration warnings (an unknown ``EXECUTORS_*`` variable) as ``warning:
    <message>`` on stderr, like errors: no file and line of the library's own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=ConfigWarning)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
            if issubclass(category, ConfigWarning):
                print(f"warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *args, **kw)

        warnings.showwarning = show
        yield


def _quiet_stdout() -> None:
    """Points standard output at the null device, so that flushing it at exit raises
    no second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        stdout = sys.stdout.fileno()  # none for a stand-in (io.StringIO): nothing to do
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stdout)
        finally:
            os.close(devnull)


def _print_json(document: object) -> None:
    # default=str: values from TOML files may be dates; a setup may be a callable.
    print(json.dumps(document, indent=2, default=str))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in columns:
        # Names stay whole; only the free text of the last column wraps.
        table.add_column(column, no_wrap=column != columns[-1])
    return table


@contextmanager
def _logging_to(console: Console, level: str | None = None) -> Iterator[None]:
    """Show the library's warnings (spawn failures, broken plugins) on ``console``; with
    ``level`` (--log-level), every record of that level and above, the jobs' own
    included (a worker's records are logged again in the host, under their names)."""
    handler = RichHandler(console=console, show_time=level is not None, show_path=False)
    logger = logging.getLogger() if level is not None else logging.getLogger("executors")
    was = logger.level
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(was)


# -- executors backends ------------------------------------------------------------------


def _capability_labels(capabilities: Capabilities) -> list[str]:
    enabled = [name for name, on in attrs.asdict(capabilities).items() if on]
    order = list(_CAPABILITY_LABELS)
    enabled.sort(key=lambda name: order.index(name) if name in order else len(order))
    return [_CAPABILITY_LABELS.get(name, name) for name in enabled]


def _backends_document(registry: Registry) -> dict[str, list[dict[str, object]]]:
    return {
        "backends": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "plugin": info.plugin,
                "capabilities": attrs.asdict(info.capabilities),
            }
            for info in registry.backends()
        ],
        "plugins": [attrs.asdict(info) for info in registry.plugin_infos()],
        "broken": [attrs.asdict(broken) for broken in registry.broken()],
        "blocked": [attrs.asdict(blocked) for blocked in registry.blocked()],
    }


def _show_backends(console: Console, registry: Registry, *, tracebacks: bool) -> None:
    if backends := registry.backends():
        table = _table("Backends", "name", "distribution", "version", "capabilities")
        for info in backends:
            labels = ", ".join(_capability_labels(info.capabilities))
            table.add_row(info.name, info.distribution, info.version, labels)
        console.print(table)
    if plugins := registry.plugin_infos():
        table = _table("Plugins", "plugin", "distribution", "version", "hooks")
        for plugin in plugins:
            table.add_row(plugin.name, plugin.distribution, plugin.version, ", ".join(plugin.hooks))
        console.print(table)
    _show_broken(console, registry, tracebacks=tracebacks)
    _show_blocked(console, registry)


def _show_broken(console: Console, registry: Registry, *, tracebacks: bool) -> None:
    if not (broken := registry.broken()):
        return
    table = _table("Broken plugins", "plugin", "distribution", "version", "kind", "error")
    for plugin in broken:
        table.add_row(plugin.plugin, plugin.distribution, plugin.version, plugin.kind, plugin.error)
    console.print(table)
    for plugin in broken if tracebacks else ():
        console.print(Text(f"\nTraceback of plugin {plugin.plugin!r}:", style="bold"))
        console.print(Text(plugin.traceback), soft_wrap=True)  # wrapped, it would misalign
    if not tracebacks:
        console.print("Run `executors backends --traceback` to see why each one failed.")


def _show_blocked(console: Console, registry: Registry) -> None:
    if not (blocked := registry.blocked()):
        return
    table = _table("Blocked plugins", "plugin", "distribution", "version", "reason")
    for plugin in blocked:
        table.add_row(plugin.plugin, plugin.distribution, plugin.version, plugin.reason)
    console.print(table)


def _backends_command(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.json:
        _print_json(_backends_document(registry))
    else:
        _show_backends(Console(), registry, tracebacks=args.traceback)
    if not registry.backends():
        _error(
            "no backend is installed: install one with the core, for example "
            "`pip install 'executors-core[process]'` (or [thread], [coroutine], [ray])"
        )
        return EXIT_FAILED
    return EXIT_OK


# -- executors config ----------------------------------------------------------------------


#: where the backend's name came from, for an error about it, when the command's own
#: argument named it (``run --backend NAME``, ``check NAME``) or ``--set backend=NAME`` did
_NAMED_BACKEND = "--backend on the command line"
_CHECKED_BACKEND = "the command line"
_SET_BACKEND = "--set on the command line"


def _load(args: argparse.Namespace, **overrides: object) -> LoadedConfig:
    """The configuration with ``--set`` and ``overrides`` (the command's own options) on
    top, fully validated: the backend is installed and its options are valid.

    Raises :class:`ConfigError` naming the source of a bad value, as ``open_pool`` would,
    and :class:`UnknownBackendError` naming where the backend's name came from.
    """
    return _load_with_options(args, overrides, named=_NAMED_BACKEND)[0]


def _load_with_options(
    args: argparse.Namespace, overrides: dict[str, object], *, named: str
) -> tuple[LoadedConfig, list[ConfigRow]]:
    """:func:`_load`, and the selected backend's options as rows (``"<backend>.<option>"``,
    the value parsed to the option's type, its source). ``named`` is where the backend's
    name came from when ``overrides`` holds it."""
    settings = dict(args.settings)
    loaded = load_config({**settings, **overrides}, directory=args.dir)
    if "backend" in overrides:
        source = named
    elif "backend" in settings:
        source = _SET_BACKEND
    else:
        source = loaded.source("backend")
    # Checked before anything runs, so `executors config` reports it too.
    backend = loaded.config.backend
    options = typed_backend_options(
        default_registry().backend(backend, source=source).options, loaded
    )
    rows = [
        ConfigRow(f"{backend}.{option}", value, loaded.source(f"{backend}.{option}"))
        for option, value in options.items()
    ]
    return loaded, rows


def _config_command(args: argparse.Namespace) -> int:
    loaded, given = _load_with_options(args, {}, named=_NAMED_BACKEND)
    backend = loaded.config.backend
    options = default_registry().backend(backend, source=loaded.source("backend")).options
    prefix = f"{backend}."
    rows = [row for row in loaded.rows() if not row.key.startswith(prefix)]
    rows += _option_rows(options, prefix, {row.key: row for row in given})
    if args.json:
        _print_json([row._asdict() for row in rows])
        return EXIT_OK
    table = _table("Configuration", "key", "value", "source")
    for key, value, source in rows:
        table.add_row(key, repr(value), source)
    Console().print(table)
    return EXIT_OK


def _option_rows(options: type, prefix: str, given: dict[str, ConfigRow]) -> list[ConfigRow]:
    """Every option of the backend, in the order its class declares them: those set
    (parsed, with their source), then those left at their defaults (source "default"),
    so that the whole configuration the backend runs with is shown."""
    rows = []
    for field in attrs.fields(options):
        key = prefix + (field.alias or field.name)
        if key in given:
            rows.append(given.pop(key))
        elif field.init and field.default is not attrs.NOTHING:
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                if default.takes_self:
                    continue
                default = default.factory()
            rows.append(ConfigRow(key, default, "default"))
    return rows + list(given.values())


# -- executors run -------------------------------------------------------------------------


@attrs.define
class _Tally:
    """What the jobs of one run came to: counts, one message per failure reason, and one
    latency per job (for the percentiles); never the outcomes themselves."""

    ok: int = 0
    failures: Counter[str] = attrs.field(factory=Counter)
    #: the first error message seen for each failure reason
    examples: dict[str, str] = attrs.field(factory=dict)
    #: seconds from submit to outcome, of every job
    latencies: list[float] = attrs.field(factory=list)
    #: how many failed jobs keep their error for the summary (--tracebacks)
    keep: int = 3
    #: (job id, reason, error) of the first ``keep`` failed jobs that have an error
    kept: list[tuple[str, str, RemoteError]] = attrs.field(factory=list)

    @property
    def failed(self) -> int:
        return self.failures.total()

    def add(self, outcome: JobOutcome) -> None:
        if outcome.submitted_at is not None and outcome.finished_at is not None:
            self.latencies.append(outcome.finished_at - outcome.submitted_at)
        if outcome.ok:
            self.ok += 1
            return
        reason = outcome.reason.value if outcome.reason else outcome.status.value
        self.fail(reason, str(outcome.error) if outcome.error else "")
        if outcome.error is not None and len(self.kept) < self.keep:
            self.kept.append((outcome.job_id, reason, outcome.error))

    def fail(self, reason: str, message: str) -> None:
        self.failures[reason] += 1
        if message:
            self.examples.setdefault(reason, message)


@attrs.define
class _Stop:
    """The signals ``executors run`` received: the first stops it gracefully, the second
    cancels what still runs."""

    #: the first signal: no job is submitted after it, and the pool drains
    graceful: signal.Signals | None = None
    #: the second signal: running jobs are cancelled at once
    forced: signal.Signals | None = None


@attrs.frozen
class _Report:
    tally: _Tally
    #: seconds from opening the pool to its close, warm-up and drain included
    wall_time: float
    statistics: PoolStatistics
    #: jobs never submitted, because a signal stopped the run first
    not_run: int
    stop: _Stop


@attrs.frozen
class _BadLine:
    """A line of --input that is no JSON: it fails as a job of its own."""

    message: str


#: a job's place in the run ({"index": i}, or {"line": n} with --input) and payload
_Item = tuple[dict[str, int], object]


@attrs.frozen
class _RunPlan:
    """One ``executors run``: what to run and how many at a time."""

    config: LoadedConfig
    #: --jobs; None: 1, or with --input every line
    jobs: int | None
    payload: Payload | None
    concurrency: int
    quiet: bool
    #: the --input lines and how to name them in messages; None: no --input
    lines: Iterable[str] | None = None
    input_name: str = ""

    @property
    def total(self) -> int | None:
        """How many jobs, where that is known before the run."""
        if self.lines is None:
            return self.jobs or 1
        return self.jobs

    def payloads(self) -> Iterator[_Item]:
        if self.lines is None:
            for i in range(self.jobs or 1):
                yield {"index": i}, i if self.payload is None else self.payload.value
            return
        taken = 0
        for number, line in enumerate(self.lines, 1):
            if self.jobs is not None and taken >= self.jobs:
                return
            if not line.strip():
                continue
            taken += 1
            try:
                yield {"line": number}, json.loads(line)
            except json.JSONDecodeError as err:
                yield {"line": number}, _BadLine(f"{self.input_name}:{number}: not JSON: {err}")


class _Output:
    """Where each outcome goes as a line of JSON (--output), as it ends. A reader that
    went away (``| head``) ends the run's submitting, as a first signal would."""

    def __init__(self, file: IO[str] | None) -> None:
        self._file = file
        self.broken = False

    def write(self, place: dict[str, int], outcome: JobOutcome | None, bad: str = "") -> None:
        if self._file is None or self.broken:
            return
        record: dict[str, object] = dict(place)
        if outcome is None:  # a line that is no JSON
            record |= {"status": "failed", "reason": _INVALID_INPUT, "error": {"message": bad}}
        else:
            record |= {"job_id": outcome.job_id, "status": outcome.status.value}
            if outcome.ok:
                record["value"] = outcome.value
            else:
                record["reason"] = outcome.reason.value if outcome.reason else None
                if (error := outcome.error) is not None:
                    record["error"] = {
                        "type": error.type_name,
                        "message": error.message,
                        "traceback": error.traceback,
                    }
            record["attempts"] = outcome.attempts
        try:
            # A value JSON cannot hold is written as its repr.
            self._file.write(json.dumps(record, default=repr) + "\n")
            self._file.flush()
        except BrokenPipeError:
            self.broken = True


async def _submit_all(
    pool: Pool,
    take: Callable[[], Awaitable[_Item | None]],
    tally: _Tally,
    advance: Callable[[], None],
    stop: _Stop,
    output: _Output,
) -> None:
    """Run jobs one after another until ``take`` has no more or a signal stops the run.
    Several of these share one ``take``, so that as many jobs are in flight as there are
    of them."""
    while stop.graceful is None and not output.broken and (item := await take()) is not None:
        place, payload = item
        if isinstance(payload, _BadLine):
            tally.fail(_INVALID_INPUT, payload.message)
            output.write(place, None, payload.message)
            advance()
            continue
        try:
            handle = await pool.submit(payload)
        except PoolClosed:
            return  # a signal came while this job waited for room: it is not run
        except PoolFull as err:
            tally.fail(_REJECTED, str(err))
        else:
            outcome = await handle.outcome()
            tally.add(outcome)
            output.write(place, outcome)
        advance()


def _taker(plan: _RunPlan) -> Callable[[], Awaitable[_Item | None]]:
    """The next job's place and payload, or None once there are no more. Lines of
    --input are read in a thread (standard input may keep the reader waiting), one
    reader at a time; generated payloads are taken at once."""
    items = plan.payloads()
    if plan.lines is None:

        async def generated() -> _Item | None:
            return next(items, None)

        return generated
    lock = anyio.Lock()

    async def read() -> _Item | None:
        async with lock:
            return await anyio.to_thread.run_sync(next, items, None)

    return read


async def _refresh_forever(progress: Progress) -> None:
    # Redrawn from the event loop rather than by rich's own thread, which would outlive
    # the run by up to one refresh interval.
    while True:
        progress.refresh()
        await anyio.sleep(_PROGRESS_REFRESH)


async def _stop_on_signals(
    signals: AsyncIterator[signal.Signals], pool: Pool, stop: _Stop, tg: TaskGroup
) -> None:
    """The first SIGINT or SIGTERM drains the pool (``drain_timeout``); the second
    cancels what still runs (a drain with timeout 0). Later ones are ignored."""
    async for signum in signals:
        if stop.graceful is None:
            stop.graceful = signum
            timeout = pool.config.drain_timeout
            _notice(
                f"{signum.name} received: submitting no more jobs and draining the pool "
                f"(up to {timeout:g} s); send it again to cancel running jobs"
            )
            # Not awaited here, so that the second signal is read while this drains.
            tg.start_soon(pool.drain)
        elif stop.forced is None:
            stop.forced = signum
            _notice(f"{signum.name} received again: cancelling running jobs")
            await pool.drain(timeout=0)


def _notice(message: str) -> None:
    # Plain text on stderr, like _error(): it must reach logs unwrapped.
    print(f"executors: {message}", file=sys.stderr, flush=True)


async def _run_jobs(plan: _RunPlan, output: _Output, keep: int) -> _Report:
    tally, stop = _Tally(keep=keep), _Stop()
    started = time.perf_counter()
    # Only the command line handles signals: a library's open_pool() leaves them alone.
    # Installed before any job starts, and kept until the pool has closed, so that a
    # second signal can still cut a drain short.
    with ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except (NotImplementedError, ValueError, RuntimeError):
            # No handlers on this loop or thread (asyncio on Windows, main() called
            # from another thread): Ctrl-C raises KeyboardInterrupt as before.
            signals = None
        error: Exception | None = None
        async with anyio.create_task_group() as watcher:
            try:
                async with open_pool(plan.config) as pool:
                    if signals is not None:
                        watcher.start_soon(_stop_on_signals, signals, pool, stop, watcher)
                    # Started once the pool is open, so that an error opening it shows
                    # no empty bar.
                    with _progress(plan.quiet) as progress:
                        await _run_with_progress(pool, plan, tally, progress, stop, output)
            except Exception as exc:
                # Re-raised once the task group has exited, so that main() sees the
                # ConfigError itself, not an ExceptionGroup wrapping it.
                error = exc
            watcher.cancel_scope.cancel()
        if error is not None:
            raise error
    total = plan.total
    not_run = 0 if total is None else total - tally.ok - tally.failed
    return _Report(tally, time.perf_counter() - started, pool.statistics(), not_run, stop)


async def _run_with_progress(
    pool: Pool, plan: _RunPlan, tally: _Tally, progress: Progress, stop: _Stop, output: _Output
) -> None:
    task = progress.add_task("jobs", total=plan.total, failed=0)

    def advance() -> None:
        progress.update(task, advance=1, failed=tally.failed)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_refresh_forever, progress)
        async with anyio.create_task_group() as jobs:
            take = _taker(plan)
            for _ in range(plan.concurrency):
                jobs.start_soon(_submit_all, pool, take, tally, advance, stop, output)
        tg.cancel_scope.cancel()


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        auto_refresh=False,
        disable=quiet,
    )


def _percentile(ordered: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of sorted, non-empty ``ordered``."""
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def _latency_text(latencies: list[float]) -> str:
    if not latencies:
        return "n/a"
    ordered = sorted(latencies)
    p50, p99 = (_percentile(ordered, p) * 1000 for p in (50, 99))
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def _show_summary(console: Console, report: _Report) -> None:
    tally, stats, wall = report.tally, report.statistics, report.wall_time
    total = tally.ok + tally.failed
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column()
    counts = Text.assemble((f"{tally.ok} ok", "green"), ", ", _failed_text(tally))
    if report.not_run:
        counts.append(f", {report.not_run} not run", style="yellow")
    grid.add_row("jobs", counts)
    for reason, count in tally.failures.most_common():
        example = tally.examples.get(reason)
        grid.add_row("", Text(f"{count} {reason}" + (f" (first: {example})" if example else "")))
    grid.add_row("wall time", f"{wall:.2f} s")
    grid.add_row("throughput", f"{total / wall:.1f} jobs/s" if wall > 0 else "n/a")
    grid.add_row("latency", _latency_text(tally.latencies))
    started, failures = stats.executors_started, stats.spawn_failures
    grid.add_row("executors", f"{started} started, {failures} spawn failures")
    if (stop := report.stop).graceful is not None:
        how = "cancelled by a second signal" if stop.forced else "drained"
        grid.add_row("stopped", f"by {stop.graceful.name}: {how}")
    console.print(grid)


def _show_failures(tally: _Tally) -> None:
    """The remote tracebacks of the first failed jobs, then how many more failed, on
    standard error: plain text, as a traceback is read and searched."""
    for job_id, reason, error in tally.kept:
        print(f"\njob {job_id} failed ({reason}):", file=sys.stderr)
        print(error.traceback.rstrip() or f"{error.type_name}: {error.message}", file=sys.stderr)
    more = tally.failed - len(tally.kept)
    if tally.kept and more:
        print(f"\n... and {more} more failed job{'s' if more > 1 else ''}", file=sys.stderr)


def _failed_text(tally: _Tally) -> Text:
    return Text(f"{tally.failed} failed", style="red" if tally.failed else "")


def _put_cwd_on_path() -> None:
    """Let entrypoints name modules of the current directory, as ``python -m`` does (the
    console script's sys.path starts with its own bin directory instead)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _run_command(args: argparse.Namespace) -> int:
    if args.host_loop == "trio" and importlib.util.find_spec("trio") is None:
        _error("--host-loop trio needs trio: install it with `pip install trio`")
        return EXIT_ERROR
    if args.tracebacks < 0:
        _error(f"--tracebacks {args.tracebacks} is invalid: must be 0 or more")
        return EXIT_ERROR
    _put_cwd_on_path()
    named = {"entrypoint": args.entrypoint, "setup": args.setup, "backend": args.backend}
    loaded = _load(args, **{key: value for key, value in named.items() if value is not None})
    if loaded.config.entrypoint is None:
        _error(
            "no entrypoint: give one (executors run module:function), or set entrypoint "
            "in pyproject.toml [tool.executors], executors.toml or EXECUTORS_ENTRYPOINT"
        )
        return EXIT_ERROR
    concurrency = args.concurrency or 2 * loaded.config.max_executors
    with ExitStack() as files:
        try:
            lines = _opened(files, args.input, "r") if args.input else None
            out = _opened(files, args.output, "w") if args.output else None
        except OSError as err:
            _error(str(err))
            return EXIT_ERROR
        name = "<stdin>" if args.input == "-" else str(args.input)
        plan = _RunPlan(loaded, args.jobs, args.payload, concurrency, args.quiet, lines, name)
        output = _Output(out)
        report = anyio.run(_run_jobs, plan, output, args.tracebacks, backend=args.host_loop)
    # The summary stays off standard output when the outcomes go there.
    _show_summary(Console(stderr=args.output == "-"), report)
    _show_failures(report.tally)
    if output.broken:
        _notice("the reader of --output went away: stopped submitting jobs")
        return EXIT_BROKEN_PIPE
    return _run_status(report)


def _opened(files: ExitStack, path: str, mode: str) -> IO[str]:
    """``path`` opened for the run ('-': standard input or output, left open)."""
    if path == "-":
        return sys.stdin if mode == "r" else sys.stdout
    try:
        return files.enter_context(open(path, mode, encoding="utf-8"))
    except OSError as err:
        which = "--input" if mode == "r" else "--output"
        msg = f"cannot open {which} {path}: {err.strerror or err}"
        raise OSError(msg) from err


def _run_status(report: _Report) -> int:
    """0 when every submitted job succeeded, 1 when one failed; after a second signal,
    128 + that signal's number (130 for SIGINT, 143 for SIGTERM). Jobs a first signal
    kept from being submitted are not failures."""
    if (forced := report.stop.forced) is not None:
        return EXIT_INTERRUPTED if forced is signal.SIGINT else 128 + forced.value
    return EXIT_FAILED if report.tally.failed else EXIT_OK


# -- executors check -------------------------------------------------------------------------


def _check_command(args: argparse.Namespace) -> int:
    try:
        import pytest  # noqa: F401 -- only whether it imports

        if importlib.util.find_spec("hypothesis") is None:
            raise ImportError("No module named 'hypothesis'")  # noqa: EM101
    except ImportError as err:
        _error(
            f"`executors check` needs pytest and Hypothesis ({err}): "
            "install executors-core[testing], for example: pip install 'executors-core[testing]'"
        )
        return EXIT_ERROR
    from ._check import DEFAULT_TIMEOUT, check

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT[args.profile]
    if not timeout > 0:
        _error(f"--timeout {args.timeout} is invalid: must be a number of seconds above 0")
        return EXIT_ERROR
    # The backend's options as `run` reads them; invalid ones end it here, as they would
    # end `run`, before any rule runs.
    overrides: dict[str, object] = {"backend": args.backend}
    _, options = _load_with_options(args, overrides, named=_CHECKED_BACKEND)
    return check(args.backend, args.profile, as_json=args.json, timeout=timeout, options=options)


# -- running a command ---------------------------------------------------------------------


#: the function behind each command's name (``_cli`` names them, to import nothing)
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "backends": _backends_command,
    "config": _config_command,
    "run": _run_command,
    "check": _check_command,
}


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; its exit status. A mistake the user can fix is
    ``error: <message>`` on stderr and status 2, never a traceback."""
    level = getattr(args, "log_level", None)
    with _logging_to(Console(stderr=True), level), _config_warnings_shown():
        try:
            return _COMMANDS[args.command](args)
        except ExecutorsError as err:
            _error(str(err))
            return EXIT_ERROR
        except BrokenPipeError:
            # The reader of standard output went away (`executors config --json | head`):
            # nothing is left to say, and nothing to say it to.
            _quiet_stdout()
            return EXIT_BROKEN_PIPE
        except KeyboardInterrupt:
            _error("interrupted")
            return EXIT_INTERRUPTED
