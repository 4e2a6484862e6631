from __future__ import annotations

from typing import TYPE_CHECKING

import executors

if TYPE_CHECKING:
    from collections.abc import Callable


@executors.hookimpl
def executors_register_backends(register: Callable[[executors.Backend], None]) -> None:
    # Imported here: the package is imported by the fork server and its workers too,
    # which need none of the host's side.
    from ._backend import ProcessBackend

    register(ProcessBackend())
