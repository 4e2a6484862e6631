"""Backend ``ray``: its options, and connecting to Ray once per interpreter."""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from executors import Capabilities, ConfigError
from executors.backend import factory

from ._executor import ActorSpec, RayExecutor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from executors import ExecutorFactory, PoolConfig

logger = logging.getLogger("executors.ray")

_CAPABILITIES = Capabilities(
    isolates_crashes=True,
    can_kill_running_job=True,
    measures_memory=True,
    sync_entrypoints=True,
    async_entrypoints=True,
    reusable=True,
    remote=True,
    setup_per_pool=False,
)


def _mapping(value: object) -> object:
    """A table from TOML or a PoolConfig as it is; JSON text (an environment variable,
    ``--set``) parsed."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            msg = f"{value!r} is not a table, nor JSON text of one: {exc}"
            raise ValueError(msg) from exc
    return value


def _check_address(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        msg = (
            f"address = {value!r} is invalid: expected 'auto', 'ray://host:port' or "
            "'host:port' (unset: a Ray of its own on this machine)"
        )
        raise ValueError(msg)


def _check_amount(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _amount(value):
        msg = f"{attribute.name} = {value!r} is invalid: expected a number >= 0"
        raise ValueError(msg)


def _amount(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _check_resources(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    rule = 'expected a table of resource names to amounts >= 0, as {"accelerator": 1}'
    if not isinstance(value, Mapping):
        msg = f"resources = {value!r} is invalid: {rule}"
        raise ValueError(msg)
    for name, amount in value.items():
        number = isinstance(amount, int | float) and not isinstance(amount, bool)
        if not isinstance(name, str) or not number or not _amount(amount):
            msg = f"resources = {dict(value)!r} is invalid: {name!r} = {amount!r}; {rule}"
            raise ValueError(msg)
        if name in ("CPU", "GPU"):
            option = "num_cpus" if name == "CPU" else "num_gpus"
            msg = f"resources = {dict(value)!r} is invalid: set {name} with the option {option}"
            raise ValueError(msg)


def _check_runtime_env(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        msg = f"runtime_env = {value!r} is invalid: expected a table (Ray's runtime_env)"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class RayOptions:
    """Options of the ray backend (``[tool.executors.ray]``)."""

    #: the Ray cluster: unset starts a Ray of its own on this machine at the first pool
    #: (kept for the interpreter's life), ``"auto"`` joins the cluster this machine is
    #: part of (``ray start --head``), ``"ray://host:port"`` goes through Ray Client
    address: str | None = attrs.field(default=None, validator=_check_address)
    #: seconds to wait for the connection (or for a local Ray to start) before the
    #: pool fails to open
    connect_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))
    #: Ray namespace of the connection, where this backend makes it
    namespace: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    #: CPUs each executor reserves: Ray places an executor only where they are free.
    #: Unset: 1 on a cluster; 0 on the Ray this backend starts on this machine, where
    #: max_executors is the only limit (as with the process backend)
    num_cpus: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_amount)
    )
    #: GPUs each executor reserves (fractions share a GPU)
    num_gpus: float = attrs.field(default=0.0, validator=_check_amount)
    #: custom resources each executor reserves, as {"accelerator": 1}
    resources: Mapping[str, float] = attrs.field(
        factory=dict, converter=_mapping, validator=_check_resources
    )
    #: Ray's runtime_env for every executor (pip packages, working_dir, env_vars...)
    runtime_env: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_mapping, validator=_check_runtime_env
    )
    #: send each executor's jobs through a Ray compiled graph (a thread of the host's
    #: per executor): a fraction of a plain actor call's round trip and CPU, but Ray's
    #: channels wait by spinning: an idle actor keeps part of a CPU busy, and the host
    #: a whole one per running job (docs/ray.md has the figures)
    compiled_graphs: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


class RayConnectError(ConfigError):
    """Raised when the pool cannot connect to (or start) the Ray cluster it is set for."""


_connecting = threading.Lock()


@attrs.define(eq=False)
class _Connection:
    """One ``ray.init()``, on a daemon thread of its own that lives as long as the
    interpreter: the processes of a local Ray die with the thread that started them
    (Linux's parent-death signal is per thread), and the thread of the first pool's
    event loop may end long before the interpreter does."""

    options: RayOptions
    made: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None
    #: set once Ray was shut down (by the application): the thread may end
    released: threading.Event = attrs.field(factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="executors-ray-connection", daemon=True).start()

    def _run(self) -> None:
        import ray

        options = self.options
        # Unset: a Ray of its own, even where RAY_ADDRESS is set or another Ray on this
        # machine left its address behind (ray.init() with no address would join those).
        address = options.address or "local"
        settings: dict[str, Any] = {"address": address, "namespace": options.namespace}
        if options.address is None:
            settings["include_dashboard"] = False
        quiet = _NotMainThread()
        ray_logger = logging.getLogger("ray._private.worker")
        ray_logger.addFilter(quiet)
        try:
            ray.init(**settings)
        except BaseException as exc:
            self.error = exc
            self.made.set()
            return
        finally:
            ray_logger.removeFilter(quiet)
        self.made.set()
        self.released.wait()  # a local Ray's processes live as long as this thread

    def ended(self) -> bool:
        """It connected, and Ray has been shut down since (``ray.shutdown()``)."""
        import ray

        return self.made.is_set() and self.error is None and not ray.is_initialized()


#: the connection this backend made or is making (one interpreter, one cluster)
_connection: _Connection | None = None


def connect(options: RayOptions) -> bool:
    """Connect this interpreter to Ray, unless it already is (by this backend, or by the
    application's own ``ray.init()``, which then wins); whether it is connected to a Ray
    this backend started on this machine. Raises :class:`RayConnectError` when that
    fails, or takes longer than ``connect_timeout``."""
    import ray

    global _connection
    with _connecting:
        if _connection is not None and _connection.ended():
            _connection.released.set()
            _connection = None
        if _connection is None or _connection.error is not None:
            if ray.is_initialized():
                return False
            _connection = _Connection(options)
            _connection.start()
        connection = _connection
    where = connection.options.address or "a Ray of its own on this machine"
    if not connection.made.wait(options.connect_timeout):
        msg = (
            f"backend 'ray' could not connect to {where} within connect_timeout "
            f"({options.connect_timeout}s): is the cluster up (`ray status`), and the "
            "address right?"
        )
        raise RayConnectError(msg)
    if connection.error is not None:
        exc = connection.error
        msg = f"backend 'ray' could not connect to {where}: {type(exc).__name__}: {exc}"
        raise RayConnectError(msg) from exc
    logger.debug("connected to Ray at %s", where)
    return connection.options.address is None


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that it sets no SIGTERM handler off the main thread: the
    connection thread is never the main thread, by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


@attrs.frozen
class RayBackend:
    """Backend ``ray``: one Ray actor per executor."""

    name: str = "ray"
    capabilities: Capabilities = _CAPABILITIES
    options: type = RayOptions

    @asynccontextmanager
    async def open(self, config: PoolConfig, options: object) -> AsyncIterator[ExecutorFactory]:
        assert isinstance(options, RayOptions)
        # ray.init() takes seconds: off the event loop
        local = await anyio.to_thread.run_sync(connect, options)
        num_cpus = options.num_cpus if options.num_cpus is not None else (0.0 if local else 1.0)
        async with anyio.create_task_group() as tg:
            spec = ActorSpec.of(config, options, tg, num_cpus)
            yield factory(functools.partial(RayExecutor, spec=spec))
            tg.cancel_scope.cancel()
