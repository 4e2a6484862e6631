"""The public facade: every public name is exported, nothing private leaks."""

from __future__ import annotations

import types

import pytest

import executors
import executors.testing


@pytest.mark.parametrize("module", [executors, executors.testing])
def test_all_lists_exactly_the_public_names(module: types.ModuleType) -> None:
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
