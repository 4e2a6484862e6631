"""The conformance suite: the rules every backend keeps, and the tests that check them.

Run it with ``executors check NAME``, with the pytest plugin
(``pytest --pyargs executors.testing.conformance --executors-backend NAME``), or by
subclassing :class:`BackendConformance` in a backend's own tests. See
``docs/conformance.md``.
"""

from __future__ import annotations

from ._rules import RULES as RULES
from ._rules import RULES_VERSION as RULES_VERSION
from ._rules import Rule as Rule
from ._rules import rule as rule
from ._suite import PROFILES as PROFILES
from ._suite import BackendConformance as BackendConformance
from ._suite import base_config as base_config

__all__ = [
    "PROFILES",
    "RULES",
    "RULES_VERSION",
    "BackendConformance",
    "Rule",
    "base_config",
    "rule",
]
