"""Job functions usable as entrypoints on any backend (importable inside workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors._job import JobContext


def echo(ctx: JobContext) -> object:
    """Return the payload."""
    return ctx.payload


async def aecho(ctx: JobContext) -> object:
    """Return the payload (async)."""
    return ctx.payload


async def scripted(ctx: JobContext) -> object:
    """Follow a :class:`~executors.testing.Script` payload on any async backend:
    wait ``seconds``, then return ``value``, raise, or hang until cancelled. A ``crash``
    script raises too: only a backend can really crash."""
    import anyio

    from ._simulated import Script, SimulatedError

    script = ctx.payload
    if not isinstance(script, Script):
        return script
    await anyio.sleep(script.seconds)
    if script.action == "hang":
        await anyio.sleep_forever()
    if script.action != "succeed":
        raise SimulatedError(script.message)
    return script.value
