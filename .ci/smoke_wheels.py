"""Install the built distributions by name into a fresh virtualenv and run jobs on each
backend, and through each observer: what a user gets from ``pip install
'executors-core[process]'`` (and ``executors-prometheus``, ``executors-opentelemetry``).

Run: ``python .ci/smoke_wheels.py DIST`` (``make wheels`` builds DIST first). The
virtualenv and the job's module live in a temporary directory outside the repository,
so nothing is imported from the source tree. Exits non-zero, saying what failed, if
an install or a job does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

#: every distribution a release holds, and the sdist of each
DISTRIBUTIONS = [
    "executors_core",
    "executors_process",
    "executors_thread",
    "executors_coroutine",
    "executors_ray",
    "executors_prometheus",
    "executors_opentelemetry",
]
#: backend -> the job it runs (a sync one where the backend runs sync jobs)
JOBS = {
    "process": "smoke_jobs:double",
    "thread": "smoke_jobs:double",
    "coroutine": "smoke_jobs:adouble",
}
SMOKE_JOBS = """
def double(ctx):
    return 2 * ctx.payload


async def adouble(ctx):
    return 2 * ctx.payload
"""
#: the observers: a pool of three jobs with each, and what it recorded
SMOKE_OBSERVERS = """
import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from executors import open_pool
from executors_opentelemetry import OpenTelemetryObserver
from executors_prometheus import PrometheusObserver

registry, spans, tracing = CollectorRegistry(), InMemorySpanExporter(), TracerProvider()
tracing.add_span_processor(SimpleSpanProcessor(spans))
observers = [PrometheusObserver(registry), OpenTelemetryObserver(tracing)]


async def main() -> None:
    async with open_pool(
        backend="coroutine", entrypoint="smoke_jobs:adouble", observers=observers, name="smoke"
    ) as pool:
        for i in range(3):
            await pool.run(i)


anyio.run(main)
labels = {"pool": "smoke", "status": "succeeded", "reason": ""}
assert registry.get_sample_value("executors_jobs_total", labels) == 3
assert len(spans.get_finished_spans()) == 3
print("smoke: the Prometheus and OpenTelemetry observers recorded 3 jobs")
"""
#: seconds any one step may take
PATIENCE = 600


def run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    if done.returncode != 0:
        shown = " ".join(str(part) for part in command)
        sys.exit(f"smoke: `{shown}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> None:
    dist = Path(sys.argv[1]).resolve()
    for name in DISTRIBUTIONS:
        for pattern in (f"{name}-*.whl", f"{name}-*.tar.gz"):
            if not list(dist.glob(pattern)):
                sys.exit(f"smoke: no {pattern} in {dist}")
    with tempfile.TemporaryDirectory(prefix="executors-smoke-") as scratch:
        here = Path(scratch)
        venv.create(here / "venv", with_pip=True)
        python = here / "venv" / "bin" / "python"
        executors = here / "venv" / "bin" / "executors"
        # By name, as a user installs: the core, with three backends as its extras; the
        # wheels come from DIST, their dependencies from the package index.
        run(
            *(python, "-m", "pip", "install", "--quiet", "--find-links", dist),
            "executors-core[all]",
            cwd=here,
        )
        where = run(python, "-c", "import executors; print(executors.__file__)", cwd=here)
        if str(here) not in where:
            sys.exit(f"smoke: executors imported from {where.strip()}, not the new virtualenv")
        print(run(executors, "--version", cwd=here).strip())
        backends = json.loads(run(executors, "backends", "--json", cwd=here))["backends"]
        names = sorted(backend["name"] for backend in backends)
        if names != sorted(JOBS):
            sys.exit(f"smoke: installed backends are {names}, not {sorted(JOBS)}")
        (here / "smoke_jobs.py").write_text(SMOKE_JOBS)
        for backend, job in JOBS.items():
            written = here / f"{backend}.jsonl"
            (here / "in.jsonl").write_text("1\n2\n3\n")
            run(
                *(executors, "run", job, "--backend", backend, "--quiet"),
                *("--input", "in.jsonl", "--output", written),
                cwd=here,
            )
            values = sorted(json.loads(line)["value"] for line in written.read_text().splitlines())
            if values != [2, 4, 6]:
                sys.exit(f"smoke: the {backend} backend gave {values}, not [2, 4, 6]")
            print(f"smoke: {backend}: 3 jobs ran from the installed wheels")
        # The observers, by name too; the SDK their test exports to comes from the index.
        run(
            *(python, "-m", "pip", "install", "--quiet", "--find-links", dist),
            *("executors-prometheus", "executors-opentelemetry", "opentelemetry-sdk"),
            cwd=here,
        )
        (here / "smoke_observers.py").write_text(SMOKE_OBSERVERS)
        print(run(python, "smoke_observers.py", cwd=here).strip())


if __name__ == "__main__":
    main()
