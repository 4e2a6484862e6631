"""Entrypoints and setups for the process backend tests (imported inside workers)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext


def echo(ctx: JobContext) -> object:
    return ctx.payload


def pid(ctx: JobContext) -> int:
    return os.getpid()
