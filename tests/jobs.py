"""Entrypoints and setups the tests refer to as "tests.jobs:<name>"."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors import JobContext


def make_state() -> dict[str, str]:
    return {"model": "loaded"}


def state_of(ctx: JobContext) -> object:
    return ctx.state


async def astate_of(ctx: JobContext) -> object:
    return ctx.state


NOT_CALLABLE = 42
