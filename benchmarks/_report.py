"""What the benchmark scripts share: their options and settings, the timing loops, and
the report (a table on stdout, optionally a JSON file).

The scripts import it by name (``from _report import ...``): run as
``python benchmarks/bench_x.py``, their own directory is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import anyio
import attrs

#: one call of a side: runs the no-op job on ``i`` and returns its value
Call = Callable[[int], Awaitable[object]]


@attrs.frozen
class Row:
    """One line of the table: the same measurement of the pool and of an anchor."""

    label: str
    unit: str
    ours: float
    anchor: float

    @property
    def ratio(self) -> float:
        return self.ours / self.anchor


@attrs.frozen
class Settings:
    #: round trips timed per side, and jobs per side in each throughput test
    jobs: int
    warmup: int
    #: each test alternates between the sides this many times
    blocks: int

    @classmethod
    def from_options(cls, options: argparse.Namespace, **more: Any) -> Self:
        """The settings ``--jobs`` and ``--quick`` ask for; ``more`` sets a subclass's
        own fields."""
        if options.quick:
            return cls(jobs=min(options.jobs, 200), warmup=20, blocks=2, **more)
        return cls(jobs=options.jobs, warmup=max(100, options.jobs // 10), blocks=5, **more)


def parse_options(description: str | None, *, quick: str) -> argparse.Namespace:
    """``--jobs N``, ``--quick`` (described by ``quick``) and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=5000, help="round trips and jobs per test")
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    return parser.parse_args()


def blocks_of(settings: Settings) -> list[range]:
    """The payloads of each block: ``settings.jobs`` split into ``settings.blocks``."""
    size = max(1, settings.jobs // settings.blocks)
    return [range(start, start + size) for start in range(0, size * settings.blocks, size)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- timing: each function times one block ----------------------------------------------


async def round_trips(call: Call, payloads: range) -> list[float]:
    """Seconds each call took, one call after another."""
    samples = []
    for i in payloads:
        start = time.perf_counter()
        value = await call(i)
        samples.append(time.perf_counter() - start)
        assert value == i
    return samples


async def in_flight(call: Call, payloads: range, lanes: int) -> float:
    """``lanes`` tasks, each calling one after another until the payloads run out;
    returns seconds."""
    remaining = iter(payloads)

    async def lane() -> None:
        for i in remaining:
            assert await call(i) == i

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(lanes):
            tg.start_soon(lane)
    return time.perf_counter() - start


# -- the report ------------------------------------------------------------------------


def print_table(rows: list[Row], *, ours: str, anchor: str) -> None:
    """Each row's label, the two figures and their ratio, under a header that names the
    two sides."""
    width = max(len(row.label) for row in rows) + 2
    anchor_width = max(14, len(anchor) + 2)
    print(f"{'':{width}}{ours:>14}{anchor:>{anchor_width}}{'ratio':>8}")
    for row in rows:
        digits = 0 if row.unit == "jobs/s" else 1
        print(
            f"{row.label:{width}}{row.ours:14.{digits}f}"
            f"{row.anchor:{anchor_width}.{digits}f}{row.ratio:8.2f}"
        )


def write_json(path: Path, settings: Settings, rows: list[Row], **more_settings: int) -> None:
    """The machine, the settings (with ``more_settings``) and the rows, as JSON."""
    document = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {**attrs.asdict(settings), **more_settings},
        "rows": [{**attrs.asdict(row), "ratio": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def report(
    rows: list[Row],
    options: argparse.Namespace,
    settings: Settings,
    *,
    ours: str,
    anchor: str,
    **more_settings: int,
) -> None:
    """Print the table; also write the JSON file if ``--json`` asks for one."""
    print_table(rows, ours=ours, anchor=anchor)
    if options.json is not None:
        write_json(options.json, settings, rows, **more_settings)
