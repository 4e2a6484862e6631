"""The benchmark scripts run and print their tables. Timings are never asserted: they
depend on the machine, and a slow CI runner must not fail the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_bench_process_quick(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    output = run_script("benchmarks/bench_process.py", "--quick", "--json", str(results))
    header = output.splitlines()[0].split()
    assert header == ["process", "pool", "ProcessPoolExecutor", "ratio"]
    for label in ("round trip p50", "round trip p99", "throughput", "warm workers"):
        assert label in output
    rows = json.loads(results.read_text(encoding="utf-8"))["rows"]
    assert all(row["ours"] > 0 and row["anchor"] > 0 for row in rows)


def test_bench_coroutine_runs() -> None:
    output = run_script("benchmarks/bench_coroutine.py", "--jobs", "200")
    assert output.splitlines()[0].split() == ["pool", "bare", "task", "ratio"]
    for label in ("round trip p50", "round trip p99", "throughput"):
        assert label in output


def test_bench_thread_quick(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    output = run_script("benchmarks/bench_thread.py", "--quick", "--json", str(results))
    assert output.splitlines()[0].split() == ["thread", "pool", "anchor", "ratio"]
    for anchor in ("to_thread.run_sync", "submit().result()", "wrap_future", "map()"):
        assert anchor in output
    for label in ("round trip p50", "round trip p99", "throughput"):
        assert label in output
    rows = json.loads(results.read_text(encoding="utf-8"))["rows"]
    assert all(row["ours"] > 0 and row["anchor"] > 0 for row in rows)
