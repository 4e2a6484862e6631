"""Several machines, simulated: Ray nodes on this machine (ray_cluster_scenarios.py, in a
process of its own), one of them removed while jobs run on it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest

HERE = Path(__file__).resolve().parent
#: seconds the whole scenario may take, its cluster's start and end included
WITHIN = 240.0


@pytest.fixture(scope="module", params=["tuned", "default", "graphs"])
def findings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """What the scenario saw, with Ray's node health checks tuned to declare a removed
    node dead within a second, and with Ray's defaults (its actors are unreachable
    first, and declared dead much later); with Ray's defaults again, the jobs sent
    through compiled graphs."""
    directory = tmp_path_factory.mktemp("cluster")
    # where Ray's cluster_utils records the cluster it starts, and leaves it
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    recorded_before = recorded.exists()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, str(HERE / "ray_cluster_scenarios.py"), str(directory), request.param],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=WITHIN)
    except subprocess.TimeoutExpired:
        _kill_tree(process.pid)
        out, err = process.communicate()
        pytest.fail(f"the cluster scenario did not end within {WITHIN}s:\n{err[-3000:]}")
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(directory) in " ".join(p.info["cmdline"] or ())
    ]
    assert process.returncode == 0, f"the cluster scenario failed:\n{err[-3000:]}"
    assert not left, f"processes of the cluster scenario left: {left}"
    if not recorded_before:
        recorded.unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.Error:
        return
    for process in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.Error):
            process.kill()


def test_executors_spread_over_nodes_as_their_resources_allow(findings: dict[str, Any]) -> None:
    # four executors of one slot each, on nodes of two slots: two nodes at least
    per_node = findings["executors_per_node"]
    assert sum(per_node) == 4
    assert max(per_node) <= 2


def test_removing_a_node_fails_only_its_jobs_crashed(findings: dict[str, Any]) -> None:
    assert findings["on_victim"], "no job ran on the removed node"
    assert set(findings["on_victim"].values()) == {"crashed"}, findings["on_victim"]
    assert set(findings["elsewhere"].values()) == {"succeeded"}, findings["elsewhere"]


def test_no_job_ran_twice(findings: dict[str, Any]) -> None:
    assert findings["starts"], "no job recorded its start"
    assert set(findings["starts"].values()) == {1}, findings["starts"]


def test_the_pool_is_back_at_its_idle_target_on_the_nodes_left(findings: dict[str, Any]) -> None:
    assert findings["idle_again"] == 4


def test_a_drain_with_jobs_running_ends_within_its_bound(findings: dict[str, Any]) -> None:
    assert findings["drain_seconds"] <= findings["drain_bound"] + 2.0, findings
    assert set(findings["drained"]) == {"pool_closed"}, findings["drained"]
