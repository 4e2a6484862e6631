"""Bad input gets a clear error naming what was wrong and where."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from executors import (
    ConfigError,
    EntrypointError,
    JobFailed,
    LoadedConfig,
    PoolConfig,
    Registry,
    UnknownBackendError,
    load_config,
    open_pool,
)
from executors.testing import SimulatedBackend

if TYPE_CHECKING:
    from pathlib import Path


async def open_and_close(config: PoolConfig | None = None, **overrides: Any) -> None:
    registry = Registry.empty()
    registry.add_backend(SimulatedBackend())
    if config is None:
        async with open_pool(**overrides):
            pass
    else:
        async with open_pool(config, registry=registry, **overrides):
            pass


async def open_installed(config: PoolConfig | LoadedConfig) -> None:
    """Open and close a pool on the installed backends."""
    async with open_pool(config):
        pass


def sim(**overrides: Any) -> PoolConfig:
    return PoolConfig(backend="simulated", entrypoint="tests.jobs:state_of", **overrides)


def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'corutine'.*coroutine"):
        anyio.run(lambda: open_and_close(backend="corutine", entrypoint="executors.testing:aecho"))


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("nosuch.module:run", r"cannot import module 'nosuch\.module': ModuleNotFoundError"),
        ("tests.jobs:missing", r"module 'tests\.jobs' has no attribute 'missing'"),
        ("tests.jobs:NOT_CALLABLE", r"'tests\.jobs:NOT_CALLABLE' is not callable: it is a int"),
    ],
)
def test_an_entrypoint_that_does_not_resolve_is_named_with_its_problem(
    entrypoint: str, message: str
) -> None:
    with pytest.raises(EntrypointError, match=message):
        anyio.run(open_and_close, sim().evolve(entrypoint=entrypoint))


def test_a_setup_that_does_not_import_is_named() -> None:
    with pytest.raises(EntrypointError, match=r"setup 'tests\.jobs:nope'"):
        anyio.run(open_and_close, sim(setup="tests.jobs:nope"))


def test_a_malformed_entrypoint_reference_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match=r"entrypoint = 'tests\.jobs' is invalid: expected"):
        PoolConfig(entrypoint="tests.jobs")


def test_a_payload_for_a_pool_without_entrypoint_says_how_to_set_one() -> None:
    # A pool without an entrypoint runs plain calls (pool.call); a payload fails its job
    # alone, saying so, and the pool serves on.
    async def main() -> None:
        async with open_pool(PoolConfig(backend="thread")) as pool:
            with anyio.fail_after(60):
                with pytest.raises(JobFailed, match="set an entrypoint to run those"):
                    await pool.run({"x": 1})
                assert await pool.call(abs, -2) == 2

    anyio.run(main)


def test_an_invalid_override_names_its_source_key_value_and_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"override: idle_executors = -1 is invalid: must be >= 0"
    ):
        anyio.run(lambda: open_and_close(idle_executors=-1, entrypoint="executors.testing:aecho"))


def test_an_idle_target_above_max_executors_is_refused_at_runtime() -> None:
    async def main() -> None:
        registry = Registry.empty()
        registry.add_backend(SimulatedBackend())
        async with open_pool(sim(max_executors=2, idle_executors=0), registry=registry) as pool:
            with pytest.raises(ValueError, match=r"idle_executors = 3 is invalid"):
                pool.set_idle_executors(3)

    anyio.run(main)


@pytest.mark.parametrize("key", ["memory_limit_mb", "memory_warn_mb"])
@pytest.mark.parametrize("backend", ["thread", "coroutine"])
def test_a_memory_limit_on_a_backend_that_does_not_measure_memory_is_refused(
    key: str, backend: str
) -> None:
    entrypoint = "executors.testing:aecho" if backend == "coroutine" else "executors.testing:echo"
    limit: dict[str, Any] = {key: 500.0}
    config = PoolConfig(backend=backend, entrypoint=entrypoint, **limit)
    expected = (
        f"PoolConfig: {key} = 500.0 is invalid: backend '{backend}' does not measure its "
        "executors' memory (its capability measures_memory is false)"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        anyio.run(lambda: open_installed(config))


def test_a_memory_limit_from_a_file_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "executors.toml").write_text(
        'backend = "thread"\nentrypoint = "executors.testing:echo"\nmemory_limit_mb = 300\n'
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_config()
    with pytest.raises(ConfigError, match=r"executors\.toml \(.*\): memory_limit_mb = 300"):
        anyio.run(lambda: open_installed(loaded))


@pytest.mark.parametrize(
    ("entrypoint", "meant"),
    [
        ("app/jobs.py:run", "app.jobs:run"),
        ("jobs.py:run", "jobs:run"),
        ("app/jobs:run", "app.jobs:run"),
    ],
)
def test_an_entrypoint_written_as_a_file_path_gets_its_import_name_suggested(
    entrypoint: str, meant: str
) -> None:
    hint = f"did you mean {meant!r}? (a module's import name, not its file)"
    with pytest.raises(EntrypointError, match=re.escape(hint)):
        anyio.run(open_and_close, sim().evolve(entrypoint=entrypoint))


def test_a_module_that_does_not_import_gets_no_path_hint() -> None:
    with pytest.raises(EntrypointError) as info:
        anyio.run(open_and_close, sim().evolve(entrypoint="nosuch.module:run"))
    assert "did you mean" not in str(info.value)
