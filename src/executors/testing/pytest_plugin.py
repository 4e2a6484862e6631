"""The executors pytest plugin (entry point ``pytest11: executors``).

Inert unless asked: it adds ``--executors-backend NAME`` (repeatable) and
``--executors-profile quick|ci|thorough``, and the fixtures ``executors_backend``
(one test per named backend; skipped when none is named), ``executors_backend_options``
and ``executors_pool_config``. It imports nothing of executors until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from executors import PoolConfig

_NO_BACKEND = "no backend given: pass --executors-backend NAME to run the conformance suite"

#: backend name -> the options the conformance suite's pools on it get. ``executors
#: check`` puts here the options it read from the configuration, as ``executors run``
#: reads them; a plain pytest run has none (each backend's defaults).
BACKEND_OPTIONS = pytest.StashKey[Mapping[str, Mapping[str, object]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("executors", "executors conformance suite")
    group.addoption(
        "--executors-backend",
        action="append",
        default=[],
        dest="executors_backends",
        metavar="NAME",
        help="run tests using the executors_backend fixture on this backend (repeatable)",
    )
    group.addoption(
        "--executors-profile",
        choices=["quick", "ci", "thorough"],
        default=None,
        dest="executors_profile",
        help="how many random programs the conformance suite tries (default: quick)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "executors_backend" not in metafunc.fixturenames:
        return
    names: list[str] = metafunc.config.getoption("executors_backends")
    if names:
        metafunc.parametrize("executors_backend", names, ids=names)
    else:
        metafunc.parametrize(
            "executors_backend",
            [pytest.param(None, marks=pytest.mark.skip(reason=_NO_BACKEND))],
            ids=["no-backend"],
        )


@pytest.fixture
def executors_backend(request: pytest.FixtureRequest) -> str:
    """The name of a backend given with ``--executors-backend``."""
    name: str = request.param
    return name


@pytest.fixture
def executors_backend_options(
    request: pytest.FixtureRequest, executors_backend: str
) -> Mapping[str, object]:
    """The options of ``executors_backend`` that the conformance suite's pools get: those
    ``executors check`` read from the configuration, else none (the backend's defaults)."""
    return request.config.stash.get(BACKEND_OPTIONS, {}).get(executors_backend, {})


@pytest.fixture
def executors_pool_config(
    executors_backend: str, executors_backend_options: Mapping[str, object]
) -> PoolConfig:
    """The conformance suite's base pool configuration for ``executors_backend``."""
    from executors import default_registry
    from executors.testing.conformance import base_config

    capabilities = default_registry().backend(executors_backend).capabilities
    options = {"backend_options": executors_backend_options} if executors_backend_options else {}
    return base_config(executors_backend, capabilities, **options)
