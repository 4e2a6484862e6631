from __future__ import annotations

from typing import TYPE_CHECKING

import executors

from ._backend import RayBackend

if TYPE_CHECKING:
    from collections.abc import Callable


@executors.hookimpl
def executors_register_backends(register: Callable[[executors.Backend], None]) -> None:
    register(RayBackend())
