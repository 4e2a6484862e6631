"""The soak (``benchmarks/soak.py``) at a reduced scale: a few hundred jobs through one
pool per backend, with every fault kind that backend can take, and a high fault rate so
that each kind comes up many times. Nothing may be lost, reported twice, leaked or left
behind. Memory growth is judged on one longer run, of 20,000 jobs on the coroutine
backend (the full soak, ``make soak``, judges it on every backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the kinds each backend's capabilities allow
KINDS = {
    "coroutine": {"raise", "hang", "cancel", "setup"},
    "thread": {"raise", "hang", "cancel", "setup"},
    "process": {"raise", "crash", "hang", "cancel", "memory", "setup", "sigkill"},
}


@pytest.mark.parametrize("backend", sorted(KINDS))
def test_soak_reduced(backend: str, tmp_path: Path) -> None:
    results = tmp_path / "soak.json"
    args = [
        "benchmarks/soak.py",
        "--backend",
        backend,
        "--jobs",
        "400",
        "--fault-rate",
        "0.3",
        "--recycle-every",
        "20",
        "--setup-failure-rate",
        "0.3",
        "--kill-interval",
        "0.2",
        "--seed",
        "1",
        "--json",
        str(results),
    ]
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"soak failed:\n{done.stdout}\n{done.stderr}"
    report = json.loads(results.read_text(encoding="utf-8"))
    assert set(report["settings"]["faults"]) == KINDS[backend]
    assert report["submitted"] == 400
    assert sum(report["outcomes"].values()) == 400
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["overlaps"] == 0
    assert report["executors_leaked"] == 0
    assert report["left_behind"] == {"children": [], "threads": [], "fds": []}
    # Every kind of job fault was drawn, and the pool saw each kind of failure.
    injected = set(report["injected"]) - {"echo"}
    assert injected == KINDS[backend] - {"setup", "sigkill"}
    outcomes = set(report["outcomes"])
    assert {"failed/raised", "timed_out/timed_out"} <= outcomes
    if backend == "process":
        assert {"failed/crashed", "failed/memory_limit"} <= outcomes
        assert report["sigkills"] > 0
    # Starts went on all run long (recycling), and some of their setups failed; the
    # coroutine backend runs its setup once per pool (until it first succeeds).
    if backend != "coroutine":
        assert report["pool_statistics"]["spawn_failures"] > 0


def test_host_memory_stays_flat_over_20000_jobs(tmp_path: Path) -> None:
    """The host's memory after 20,000 jobs (5% faults) is where it was after the first
    1,000: no per-job growth in the pool's bookkeeping, hooks or logs. The coroutine
    backend runs the most jobs per second, so this scale fits in CI; the core's
    bookkeeping is the same on every backend (``make soak`` runs 100,000 on each)."""
    results = tmp_path / "soak.json"
    args = ["benchmarks/soak.py", "--backend", "coroutine", "--jobs", "20000"]
    args += ["--fault-rate", "0.05", "--seed", "2", "--json", str(results)]
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"soak failed:\n{done.stdout}\n{done.stderr}"
    report = json.loads(results.read_text(encoding="utf-8"))
    memory = report["memory"]
    assert memory["judged"], memory
    assert memory["rss_ok"], memory
    assert memory["objects_ok"], memory
    assert (report["lost"], report["duplicated"], report["executors_leaked"]) == (0, 0, 0)
