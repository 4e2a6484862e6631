"""The public facade: every public name is exported, nothing private leaks."""

from __future__ import annotations

import types

import pytest

import executors
import executors.backend
import executors.testing


@pytest.mark.parametrize("module", [executors, executors.backend, executors.testing])
def test_all_lists_exactly_the_public_names(module: types.ModuleType) -> None:
    for name in module.__all__:  # executors imports its names on first use
        getattr(module, name)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public -= {"annotations"}  # from __future__
    assert set(module.__all__) - {"__version__"} == public
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("module", [executors, executors.backend, executors.testing])
def test_public_objects_claim_a_public_home(module: types.ModuleType) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        assert not name.startswith("_") or name == "__version__"
        if isinstance(value, type | types.FunctionType):
            # defined in a private module, re-exported by the facade
            assert value.__module__.startswith(module.__name__.split(".")[0]), name


def test_errors_share_one_base_and_subclass_the_builtin_they_resemble() -> None:
    errors = [
        getattr(executors, name)
        for name in executors.__all__
        if isinstance(getattr(executors, name), type)
        and issubclass(getattr(executors, name), BaseException)
        and not issubclass(getattr(executors, name), Warning)
    ]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, executors.ExecutorsError)
        assert error.__doc__
        assert error.__doc__.startswith("Raised when") or error is executors.ExecutorsError
    assert issubclass(executors.ConfigError, ValueError)
    assert issubclass(executors.UnknownBackendError, LookupError)
    assert issubclass(executors.AcquireError, executors.JobFailed)
    # what is ignored is warned of, as a UserWarning (shown by default)
    assert issubclass(executors.ConfigWarning, UserWarning)
    assert (executors.ConfigWarning.__doc__ or "").startswith("Warned when")


def test_the_job_model_imports_without_the_pool() -> None:
    """A worker that needs only the job model (``from executors import JobContext``)
    imports neither the pool nor its configuration."""
    import subprocess
    import sys

    code = (
        "import sys; from executors import JobContext, RemoteError, resolve_callable; "
        "print(sorted(m for m in sys.modules if m.startswith(('executors._pool', "
        "'executors._config', 'anyio'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        executors.Nope  # type: ignore[attr-defined]  # noqa: B018 -- the lookup is the test


def test_backends_and_examples_import_no_private_module_of_the_core() -> None:
    """A backend uses only what a third party can: ``executors`` and
    ``executors.backend``, never ``executors._*`` (tests aside)."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    private = re.compile(r"^\s*(from|import)\s+executors\._", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for folder in ("plugins", "examples")
        for path in (root / folder).rglob("*.py")
        if "tests" not in path.parts and private.search(path.read_text())
    ]
    assert offenders == []


def test_backend_helpers() -> None:
    import anyio

    from executors import EntrypointError, ExecutorState, LaunchError
    from executors.backend import call, callable_ref, factory, not_ready
    from executors.testing.jobs import echo

    refusal = not_ready("pool1-2", "pool1-job-3", ExecutorState.CLOSED)
    assert isinstance(refusal, LaunchError)
    assert str(refusal) == "executor pool1-2 cannot take job pool1-job-3: it is closed"
    assert callable_ref(echo) == "executors.testing.jobs:echo"
    assert callable_ref("a.b:c") == "a.b:c"
    with pytest.raises(EntrypointError, match="cannot be imported by name"):
        callable_ref(lambda ctx: ctx)

    async def twice(value: int) -> int:
        return 2 * value

    assert anyio.run(call, twice, 21) == 42
    assert anyio.run(call, abs, -3) == 3
    made = factory(lambda executor_id: executor_id)  # type: ignore[arg-type,return-value]
    assert made.create_executor("pool1-1") == "pool1-1"  # type: ignore[comparison-overlap]
