"""Several Ray nodes on this machine, made with Ray's own ``cluster_utils``: a head that
runs no executor and three worker nodes of two "slot"s each. A pool of four executors
(one slot each) spreads over them; one node is removed while jobs run on it; then the
pool drains while jobs still run. Run by test_ray_cluster.py in a process of its own
(a driver connects to one cluster for its life); prints its findings as one JSON line.

    python ray_cluster_scenarios.py DIRECTORY [tuned|default|graphs]

"tuned" (the default) has Ray's control store declare a node dead after 3 missed health
checks 200 ms apart; "default" keeps Ray's own settings, where the driver finds the
node's actors unreachable (their connections dropped) long before that. "graphs" is
"default" with the jobs sent through compiled graphs (``compiled_graphs = true``).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from executors import FailureReason, JobStatus, PoolConfig, open_pool

NODES, SLOTS_PER_NODE, EXECUTORS = 3, 2, 4
#: seconds each wait below may take: a deadline, never a hope
WAIT = 60.0
DRAIN_TIMEOUT, CLOSE_TIMEOUT = 1.0, 5.0


def main(directory: Path, health: str) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    head: dict[str, Any] = {"num_cpus": 0}
    if health == "tuned":
        checks = {"health_check_period_ms": 200, "health_check_failure_threshold": 3}
        head["_system_config"] = checks
    cluster: Any = Cluster(initialize_head=True, head_node_args=head)
    try:
        nodes = {}
        for _ in range(NODES):
            node = cluster.add_node(num_cpus=SLOTS_PER_NODE, resources={"slot": SLOTS_PER_NODE})
            nodes[node.node_id] = node
        cluster.wait_for_nodes()
        return anyio.run(scenario, cluster, nodes, directory, health == "graphs")
    finally:
        import ray

        ray.shutdown()  # the driver first: Ray refuses to remove the node it is attached to
        cluster.shutdown()


async def scenario(
    cluster: Any, nodes: dict[str, Any], directory: Path, graphs: bool
) -> dict[str, Any]:
    cfg = PoolConfig(
        backend="ray",
        entrypoint="ray_jobs:held",
        idle_executors=EXECUTORS,
        max_executors=EXECUTORS,
        drain_timeout=DRAIN_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
        ping_interval=0.5,
        backend_options={
            "address": cluster.address,
            "num_cpus": 0,
            "resources": {"slot": 1},
            "compiled_graphs": graphs,
        },
    )
    findings: dict[str, Any] = {}
    async with open_pool(cfg) as pool:
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= EXECUTORS)
        # 1. four jobs at once: one on each executor
        first = [await pool.submit((str(directory), f"a{i}", WAIT)) for i in range(EXECUTORS)]
        placed = await _started(directory, [f"a{i}" for i in range(EXECUTORS)])
        per_node = Counter(placed.values())
        findings["executors_per_node"] = sorted(per_node.values())
        # 2. the node that runs most of them goes, at once (its processes SIGKILLed);
        # not the one this driver is attached to, which Ray refuses to remove
        import ray

        driver = ray.get_runtime_context().get_node_id()
        victim = next(node for node, _ in per_node.most_common() if node != driver)
        on_victim = sorted(name for name, node in placed.items() if node == victim)
        removed_at = time.monotonic()
        cluster.remove_node(nodes[victim], allow_graceful=False)
        outcomes = {}
        with anyio.fail_after(WAIT):
            for handle in first:
                name = handle.job.payload[1]
                if name in on_victim:
                    outcomes[name] = await handle.outcome()
            findings["crash_seen_after"] = time.monotonic() - removed_at
            (directory / "release").touch()
            for handle in first:
                name = handle.job.payload[1]
                if name not in on_victim:
                    outcomes[name] = await handle.outcome()
        findings["on_victim"] = {n: _ending(outcomes[n]) for n in on_victim}
        findings["elsewhere"] = {n: _ending(o) for n, o in outcomes.items() if n not in on_victim}
        # 3. back to its idle target, on the nodes left
        with anyio.fail_after(WAIT):
            await pool.wait_until(lambda s: s.idle >= EXECUTORS)
        findings["idle_again"] = pool.statistics().idle
        # 4. a drain while every executor runs a job that would take a minute
        (directory / "release").unlink()
        last = [await pool.submit((str(directory), f"b{i}", WAIT)) for i in range(EXECUTORS)]
        await _started(directory, [f"b{i}" for i in range(EXECUTORS)])
        drain_started = time.monotonic()
        with anyio.fail_after(WAIT):
            await pool.drain()
        findings["drain_seconds"] = time.monotonic() - drain_started
        findings["drain_bound"] = DRAIN_TIMEOUT + CLOSE_TIMEOUT
        findings["drained"] = [_ending(await h.outcome()) for h in last]
    findings["starts"] = _starts(directory)
    return findings


def _starts(directory: Path) -> dict[str, int]:
    """How many times each job began."""
    return {path.stem: len(path.read_text().splitlines()) for path in directory.glob("*.starts")}


async def _started(directory: Path, names: list[str]) -> dict[str, str]:
    """Each job's node, once every one of ``names`` has started."""
    with anyio.fail_after(WAIT):
        # polled: the jobs run in other processes, and leave files only
        while not all((directory / f"{n}.starts").exists() for n in names):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return {n: (directory / f"{n}.starts").read_text().split()[1] for n in names}


def _ending(outcome: Any) -> str:
    if outcome.status is JobStatus.SUCCEEDED:
        return "succeeded"
    assert isinstance(outcome.reason, FailureReason)
    return outcome.reason.value


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "tuned")))
