"""The harness's report: ``docs/benchmarks.md`` (written whole from the results, with the
method below), PNG plots, and a summary on stdout."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

INTRO = """\
# Benchmarks

Every backend against what a user would pick instead, measured in one run by
`benchmarks/bench.py` (`make bench`; `--quick` for a smoke test of a few seconds). This
page is written by that run, with the JSON of every figure beside it
([`benchmarks/results.json`](benchmarks/results.json)); `python benchmarks/bench.py
--render docs/benchmarks/results.json` writes it (and its plots) again from that JSON,
measuring nothing, and a test checks that the two agree.

**Method.** Every side runs a no-op job (it returns its payload) with 2 workers (processes,
threads or executors). Sides that are compared run in the same process and alternate in
blocks, so that a machine that gets busier or quieter during the run treats them alike.
Our process pool forks its workers from the process backend's own fork server, the
process anchors from `multiprocessing`'s forkserver; both are started before anything
is timed. The figure to
compare is the ratio to an anchor measured in the same run: absolute times move with the
machine, and a 2-core virtual machine is noisy (two runs of the same code can differ by
a third in absolute terms). Round trips are timed one call after another; throughput
runs 64 calls in flight. Tests never assert any of these figures.

- **ProcessPoolExecutor, ThreadPoolExecutor, loky, pebble**: awaited on the asyncio host
  through `asyncio.wrap_future`, as an async program would use them.
- **anyio.to_process / anyio.to_thread**: with a capacity limiter of 2.
- **trio-parallel** needs a trio host: it runs against our process pool on trio, in a
  table of its own; **trio.to_thread** (with a capacity limiter of 2) runs against our
  thread pool on trio, with anyio.to_thread there too.
- **socketpair floor**: one pickled message to another process over a socket pair and
  back, with no framework at all: the floor for any process backend.
- **thread floor**: one thread that takes each call from a `queue.SimpleQueue` and answers
  through an eventfd the loop watches (on Linux; elsewhere the loop's
  `call_soon_threadsafe`), the quickest wake-up of an asyncio loop from a thread, with
  no framework at all: the floor for any thread backend on an asyncio host. It serves
  one call at a time (no throughput). On a trio host, the floor's thread wakes the
  calling task through trio's `run_sync_soon`, as `trio.to_thread` does.
- **bare tasks**: `await asyncio.create_task(f(i))`, and a task started in a trio nursery.

**Thread pools on one CPU.** A hand-off between two threads costs about 15 µs when the
scheduler keeps them on one CPU, and about 60 µs when it puts them on two: one more
wake-up of an idle CPU, which a virtual machine makes dear. Where it puts them is its own
choice, which it keeps for seconds, so one run draws one placement per side, and the
ratio of two thread sides moves by a third from one run to the next (the bare thread
floor alone was 14 µs in one run and 64 µs in the next, on the same machine). The thread
sides therefore run twice: as the scheduler places them, and with every thread of the
process confined to one CPU, where each side pays only for what its own code does and
the ratios repeat from run to run within a few percent. The thread target is read on
one CPU (Linux only: elsewhere that part runs as the scheduler places it, and says so).

**A disturbed machine.** On a virtual machine, the host may give the machine's CPUs to
other guests: Linux counts that time as *steal*. The run reads it (`psutil.cpu_times()`)
around each part, and the page gives the share of CPU time each part lost. A quiet
machine loses well under 1%; while the host is busy, a quarter and more, and every wake-up
of a thread or a process by another then takes two to three times as long. The sides of
a comparison still take turns, but a hand-off that costs one wake-up more or less than
another's is not slowed alike, so the ratios of a part that lost more than the share
given under *This run* are flagged: run it again on a quiet machine before reading them.

The anchors' worker processes run the main module again as they start (`multiprocessing`
does so for every process it starts; a worker of our process pool runs it only when a
job needs a name from it), so `bench.py` imports nothing at its top and no side pays
for the harness's own imports; a real program should do the same (see
[Start methods](process.md#start-methods)).
"""


def _fmt(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _share(share: float) -> str:
    return "not reported" if math.isnan(share) else f"{share:.1%}"


def _table(group: dict[str, dict[str, float]], ours: str) -> list[str]:
    base = group[ours]
    lines = [
        "| side | round trip p50 (µs) | p50 ratio | round trip p99 (µs) "
        "| throughput (jobs/s) | throughput ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in group.items():
        p50_ratio = "" if name == ours else _fmt(base["p50_us"] / row["p50_us"], 2)
        tp_ratio = "" if name == ours else _fmt(base["throughput"] / row["throughput"], 2)
        label = f"**{name}**" if name == ours else name
        lines.append(
            f"| {label} | {_fmt(row['p50_us'])} | {p50_ratio} | {_fmt(row['p99_us'])} "
            f"| {_fmt(row['throughput'], 0)} | {tp_ratio} |"
        )
    lines.append("")
    lines.append(
        f"Ratios are {ours} / the side on that line: below 1 is faster for round trips, "
        "above 1 is faster for throughput."
    )
    return lines


def markdown(document: dict[str, Any], plots: list[Path], path: Path) -> str:
    results, machine = document["results"], document["machine"]
    out = [INTRO, "## This run", ""]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    out += [
        f"- Command: `{document['command']}` ({document['seconds']} s)",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}",
        f"- Python {machine['python']}; {versions}",
    ]
    if not document["settings"].get("one_cpu", True):
        out.append(
            "- No `sched_setaffinity` here: the thread pools said to run on one CPU ran as "
            "the scheduler placed them"
        )
    if document["missing"]:
        out.append(f"- Not installed, so not measured: {', '.join(document['missing'])}")
    steal = ", ".join(f"{part} {_share(share)}" for part, share in document["steal"].items())
    limit = document["settings"]["disturbed_share"]
    out.append(
        f"- CPU time stolen by the hypervisor, by part of the run (flagged above "
        f"{limit:.0%}): {steal}"
    )
    out += [
        "",
        "## Targets",
        "",
        "| target | ratio | limit | met | CPU stolen |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    close, shaken = [], []
    for row in document["targets"]:
        out.append(
            f"| {row['target']} | {_fmt(row['ratio'], 2)} | {row['limit']} "
            f"| {'yes' if row['met'] else '**no**'} | {_share(row['steal'])} |"
        )
        if row["close"]:
            close.append(row["target"])
        if row["disturbed"]:
            shaken.append(row["target"])
    if close:
        out += [
            "",
            f"Within {document['settings']['close_share']:.0%} of their limits in this run, "
            f"so that one run cannot tell whether they hold: {'; '.join(close)}. "
            "Run it again before reading them.",
        ]
    if shaken:
        out += [
            "",
            f"Measured while the hypervisor took more than {limit:.0%} of the CPU time, "
            f"so that this run cannot tell whether they hold: {'; '.join(shaken)}. "
            "Run it again on a quiet machine before reading them.",
        ]
    sections = [
        ("Process pools (asyncio host)", "process", "process pool"),
        ("Process pools on a trio host", "process_trio", "process pool"),
        ("Thread pools (asyncio host)", "thread", "thread pool"),
        ("Thread pools on one CPU (asyncio host)", "thread_one_cpu", "thread pool"),
        ("Thread pools on a trio host", "thread_trio", "thread pool"),
        ("Coroutines (asyncio host)", "coroutine", "coroutine pool"),
        ("Coroutines on a trio host", "coroutine_trio", "coroutine pool"),
    ]
    for title, key, ours in sections:
        out += ["", f"## {title}", "", *_table(results[key], ours)]
    out += _payload_section(
        {k: v for k, v in results["payloads"].items() if k.endswith(" MB")},
        results["payloads"]["peak_rss_100_mb"],
    )
    life = results["process_lifecycle"]
    out += [
        "",
        "## Process pools: start, memory, recovery",
        "",
        "| side | cold to 4 warm workers (ms) | USS per idle worker (MiB) "
        "| after a worker is SIGKILLed |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, warm in life["warm_ms"].items():
        out.append(
            f"| {name} | {_fmt(warm)} | {_fmt(life['uss_mib_per_worker'].get(name, math.nan))} "
            f"| {_recovery(life['recovery'].get(name, {}))} |"
        )
    starts = document["settings"]["starts"]
    out += [
        "",
        "Cold to 4 warm workers: our pool from `open_pool()` to 4 idle executors; the",
        "anchors from their constructor to their first result with 4 workers (they start",
        "workers lazily, so this is one start); `ProcessPoolExecutor, 4 started` from its",
        "constructor to the results of 4 calls made at once, each of which starts a",
        "worker (each call waits for the 4 workers to have come, so that none is free",
        f"for another call): four starts, as for our pool. The median of {starts} starts,",
        "the sides taking turns, and each side in turn the first of a turn (the first",
        "start after a pause is about 1 ms slower, whichever side makes it). USS is the",
        "memory a worker holds alone.",
    ]
    out += _futures_section(results)
    out += _ray_section(results, document["settings"]["starts"])
    memory = results["coroutine_memory"]
    out += [
        "",
        "## Coroutine backend: memory per running job",
        "",
        f"{document['settings']['running']:,} jobs waiting on one event at once, measured with "
        f"`tracemalloc`: a bare task holds {_fmt(memory['bare_task_bytes'], 0)} bytes, a job "
        f"of our pool {_fmt(memory['pool_job_bytes'], 0)} bytes (its caller's task included): "
        f"{_fmt(memory['extra_bytes'], 0)} bytes more.",
    ]
    if plots:
        out += ["", "## Plots", ""]
        for plot in plots:
            out.append(f"![{plot.stem}]({os.path.relpath(plot, path.parent)})")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _futures_section(results: dict[str, Any]) -> list[str]:
    """Our PoolExecutor (process backend) against ProcessPoolExecutor, called from
    synchronous code."""
    out = [
        "",
        "## concurrent.futures executors (synchronous callers)",
        "",
        "Our `PoolExecutor` on the process backend against `ProcessPoolExecutor`, both "
        "with 2 workers, called as synchronous code calls them: `submit(f, i).result()` "
        "one after another, then `map` over 100,000 integers with each chunk size (the "
        "median of a few runs, the sides taking turns).",
        "",
        *_table(results["futures"], "PoolExecutor"),
        "",
        "| chunksize | " + " | ".join(f"{n} (ms)" for n in _map_sides(results)) + " |",
        "| ---: |" + " ---: |" * len(_map_sides(results)),
    ]
    maps = results["futures_map"]
    sizes = list(maps[_map_sides(results)[0]]["seconds"])
    for size in sizes:
        cells = " | ".join(_fmt(maps[n]["seconds"][size] * 1e3) for n in _map_sides(results))
        out.append(f"| {int(size):,} | {cells} |")
    best = ", ".join(
        f"{n} {maps[n]['best_items_per_s']:,.0f} items/s at chunksize {maps[n]['best_chunksize']:,}"
        for n in _map_sides(results)
    )
    generator = results["futures_generator"]
    out += [
        "",
        f"At its best chunk size: {best}.",
        "",
        f"`map` over a generator of {generator['items']:,.0f} items (chunks of 10,000) took "
        f"{_fmt(generator['seconds'])} s; the host's RSS was "
        f"{_fmt(generator['rss_mib_at_a_tenth'])} MiB once a tenth was read, "
        f"{_fmt(generator['rss_mib_highest'])} MiB at its highest and "
        f"{_fmt(generator['rss_mib_at_end'])} MiB at the end.",
    ]
    return out


def _payload_section(sizes: dict[str, dict[str, float]], peak: float) -> list[str]:
    """Large payloads through the process backend, its anchor and the floor."""
    names = list(next(iter(sizes.values())))
    lines = [
        "",
        "## Large payloads (process backend, asyncio host)",
        "",
        "An echo job (a `bytearray` in, the same out) through 2 workers, a job in flight on "
        "each; the socketpair floor sends the same bytes to another process and back over "
        "a bare socketpair to each of 2 processes (no pickling, received into buffers "
        "allocated once). MB/s of payload per round trip: its size times the round trips, "
        "over the time they took.",
        "",
        "| payload | "
        + " | ".join(f"{name} (MB/s)" for name in names)
        + " | "
        + " | ".join(f"process pool / {name}" for name in names[1:])
        + " |",
        "| --- | " + " | ".join("---:" for _ in names + names[1:]) + " |",
    ]
    for size, rates in sizes.items():
        ours = rates[names[0]]
        lines.append(
            f"| {size} | "
            + " | ".join(_fmt(rates[name], 0) for name in names)
            + " | "
            + " | ".join(_fmt(ours / rates[name], 2) for name in names[1:])
            + " |"
        )
    lines += [
        "",
        f"The host's RSS at its highest during one 100 MB round trip of our pool: "
        f"{_fmt(peak, 2)} times the payload, above its RSS before the payload was made "
        "(the payload itself and the reply count).",
    ]
    return lines


def _ray_section(results: dict[str, Any], starts: int) -> list[str]:
    """Our pool on the ray backend against bare Ray actors (absent where ray is not
    installed)."""
    if "ray" not in results:
        return []
    warm = results["ray_lifecycle"]["warm_ms"]
    return [
        "",
        "## Ray (asyncio host)",
        "",
        "Our pool on the ray backend (2 executors, each a Ray actor) against 2 bare Ray "
        "actors, on one local Ray; a bare actor's call is awaited as an `ObjectRef`. "
        "`Ray actor`: the actors called in turn, so that with 64 calls in flight Ray "
        "queues them in each actor's mailbox and an actor runs the next as soon as the "
        "last ends. `Ray actors, one call each`: a call waits for a free actor, as "
        "`ray.util.ActorPool` hands them out, and as a pool of slots does (the contract: "
        "one job per executor at a time).",
        "",
        *_table(results["ray"], "ray pool"),
        "",
        f"From nothing to 4 warm executors: our pool {_fmt(warm['ray pool'])} ms (opened, "
        f"4 idle executors), bare Ray {_fmt(warm['Ray actors'])} ms (4 actors created, each "
        f"with its first reply); the median of {starts} starts, the sides taking turns.",
        *_compiled_graphs(results),
    ]


def _compiled_graphs(results: dict[str, Any]) -> list[str]:
    """What ``compiled_graphs = true`` gains against a bare actor, and what it costs."""
    ours, bare = results["ray"]["ray pool, compiled graphs"], results["ray"]["Ray actor"]
    warm = results["ray_lifecycle"]["warm_ms"]
    busy = results["ray_lifecycle"]["busy_cpus"]
    lines = [
        "",
        "`ray pool, compiled graphs`: the same pool with the backend's option "
        "`compiled_graphs = true`. Against the bare actor calls, its round-trip p50 is "
        f"{_fmt(ours['p50_us'] / bare['p50_us'], 2)} times theirs and its throughput "
        f"{_fmt(ours['throughput'] / bare['throughput'], 2)} times; its 4 warm executors "
        f"took {_fmt(warm['ray pool, compiled graphs'])} ms "
        f"({_fmt(warm['ray pool, compiled graphs'] / warm['Ray actors'], 2)} times the bare "
        "actors'). The machine's busy CPUs with each path, measured over "
        f"{_fmt(results['ray_lifecycle']['busy_seconds'], 1)} s:",
        "",
        "| path | its 2 executors idle | each running a job that sleeps |",
        "| --- | ---: | ---: |",
    ]
    for name, cpus in busy.items():
        lines.append(f"| {name} | {_fmt(cpus['idle'], 2)} | {_fmt(cpus['sleeping'], 2)} |")
    return lines


def _map_sides(results: dict[str, Any]) -> list[str]:
    return [name for name in results["futures_map"] if name != "items"]


def _recovery(summary: dict[str, Any]) -> str:
    if not summary:
        return "n/a"
    if "broken" in summary:
        return f"pool broken ({summary['broken']}): a new pool is needed"
    if "error" in summary:
        return f"not measured: {summary['error']}"
    if "hung" in summary:
        return f"hung: {summary['hung']}"
    text = f"a job succeeds after {_fmt(summary['job_ok_ms'])} ms"
    if "idle_target_ms" in summary:
        text += f"; back at its idle target after {_fmt(summary['idle_target_ms'])} ms"
    if summary.get("jobs_failed"):
        text += f" ({summary['jobs_failed']} calls failed meanwhile)"
    return text


def plots(document: dict[str, Any], directory: Path) -> list[Path]:
    """Round trips, throughput and the targets, as PNG files; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    results = document["results"]
    groups = [("process", "process"), ("thread", "thread"), ("coroutine", "coroutine")]
    written = []
    for measure, unit, name in (
        ("p50_us", "round trip p50 (µs)", "round_trips.png"),
        ("throughput", "no-op jobs/s, 64 in flight", "throughput.png"),
    ):
        figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
        for ax, (key, title) in zip(axes, groups, strict=True):
            names = list(results[key])
            values = [results[key][n][measure] for n in names]
            colors = ["tab:blue" if n.endswith(" pool") else "tab:gray" for n in names]
            shown = [0.0 if math.isnan(v) else v for v in values]
            bars = ax.barh(names, shown, color=colors)
            ax.bar_label(bars, labels=[_fmt(v, 0) for v in values], padding=2, fontsize=8)
            ax.set_xlim(0, max(shown) * 1.25)
            ax.set_title(title)
            ax.set_xlabel(unit)
            ax.invert_yaxis()
        figure.tight_layout()
        path = directory / name
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    figure, ax = plt.subplots(figsize=(9, 3.8))
    rows = document["targets"]
    # 1 means exactly at the limit; below 1 is within it.
    scores = [
        r["ratio"] / float(r["limit"].split()[1])
        if r["limit"].startswith("<=")
        else float(r["limit"].split()[1]) / r["ratio"]
        for r in rows
    ]
    ax.barh(
        [r["key"] for r in rows],
        scores,
        color=["tab:green" if r["met"] else "tab:red" for r in rows],
    )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("ratio / target (1 = at the target, lower is better)")
    ax.invert_yaxis()
    figure.tight_layout()
    path = directory / "targets.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    written.append(path)
    return written


def summary(document: dict[str, Any]) -> str:
    lines = [f"benchmarks: {document['seconds']} s"]
    for row in document["targets"]:
        mark = "met" if row["met"] else "NOT met"
        if row["disturbed"]:
            mark += f" (disturbed: {_share(row['steal'])} of the CPU time stolen)"
        lines.append(f"  {row['target']}: {row['ratio']:.2f} ({row['limit']}): {mark}")
    return "\n".join(lines)
