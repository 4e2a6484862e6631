"""The public facade: every public name is exported, nothing private leaks."""

from __future__ import annotations

import types

import pytest

import executors
import executors.testing


@pytest.mark.parametrize("module", [executors, executors.testing])
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


@pytest.mark.parametrize("module", [executors, executors.testing])
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
    ]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, executors.ExecutorsError)
        assert error.__doc__
        assert error.__doc__.startswith("Raised when") or error is executors.ExecutorsError
    assert issubclass(executors.ConfigError, ValueError)
    assert issubclass(executors.UnknownBackendError, LookupError)
    assert issubclass(executors.AcquireError, executors.JobFailed)


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
