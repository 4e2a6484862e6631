"""Plugin loading and the backend registry.

Plugins are distributions that declare an entry point in the group ``executors``::

    [project.entry-points.executors]
    process = "executors_process"

Each entry point is loaded on its own. One that fails to import, whose
``executors_register_backends`` hook raises, or that registers something that is not a
:class:`~executors.Backend` is recorded as a :class:`BrokenPlugin` (see
:meth:`Registry.broken`, shown by ``executors backends``) and logged once on the
``executors.plugins`` logger; every other plugin still loads. Entry points load in order
of distribution name, then entry-point name, so which plugin wins a duplicate backend
name never depends on the order of ``sys.path``.

Environment variables, modelled on pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``,
``PYTEST_PLUGINS`` and ``-p no:NAME``:

``EXECUTORS_DISABLE_PLUGIN_AUTOLOAD``
    Any non-empty value: load no entry point except those named in ``EXECUTORS_PLUGINS``.
``EXECUTORS_PLUGINS``
    Comma-separated entry-point or distribution names to load even when autoload is
    disabled. Without ``EXECUTORS_DISABLE_PLUGIN_AUTOLOAD`` every plugin loads anyway.
``EXECUTORS_BLOCK_PLUGINS``
    Comma-separated entry-point or distribution names never to load, even when
    ``EXECUTORS_PLUGINS`` names them.

Plugins left out by these variables are not broken: they are listed by
:meth:`Registry.blocked` with the reason.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import inspect
import logging
import os
import re
import threading
import traceback
from typing import TYPE_CHECKING, Literal

import attrs
import pluggy

from . import _hookspecs
from ._exceptions import DuplicateBackendError, PluginError, UnknownBackendError
from ._executor import Backend, Capabilities

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BackendInfo",
    "BlockedPlugin",
    "BrokenPlugin",
    "PluginFailure",
    "PluginInfo",
    "Registry",
    "closest_hook",
    "default_registry",
    "reset_default_registry",
]

ENTRY_POINT_GROUP = "executors"
RUNTIME = "<runtime>"
DISABLE_AUTOLOAD_VAR = "EXECUTORS_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_VAR = "EXECUTORS_PLUGINS"
BLOCK_VAR = "EXECUTORS_BLOCK_PLUGINS"

logger = logging.getLogger("executors.plugins")

_HOOK_PREFIX = "executors_"

#: What failed: importing the entry point, pluggy's validation of its hook
#: implementations, its ``executors_register_backends`` hook, or a name it shares with
#: another plugin (a backend name, or the plugin name itself); or the plugin loaded but
#: implements no hook at all, so that it could never do anything ("no_hooks").
PluginFailure = Literal["import", "validate", "register_backends", "duplicate", "no_hooks"]

_FAILURE_PHRASES: Mapping[PluginFailure, str] = {
    "import": "failed to import",
    "validate": "has invalid hook implementations",
    "register_backends": "failed in executors_register_backends",
    "duplicate": "conflicts with another plugin",
    "no_hooks": "implements no executors hook",
}


def _describe_origin(distribution: str, version: str) -> str:
    return f"{distribution} {version}" if version else distribution


@attrs.frozen
class BackendInfo:
    """One registered backend: one row of ``executors backends``."""

    name: str
    #: the distribution that registered it, ``"<runtime>"`` for one registered in code
    distribution: str
    #: the distribution's version, ``""`` when unknown
    version: str
    #: the entry-point name, or the plugin name given to :meth:`Registry.register_plugin`
    plugin: str
    backend: Backend = attrs.field(eq=False, repr=False)

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities


@attrs.frozen
class BrokenPlugin:
    """A plugin that failed; ``executors backends`` shows it with its traceback."""

    #: the entry-point name (or the name given to :meth:`Registry.register_plugin`)
    plugin: str
    distribution: str
    version: str
    #: one line, such as ``"ModuleNotFoundError: No module named 'foo'"``
    error: str
    #: the full traceback text
    traceback: str = attrs.field(repr=False)
    #: what failed
    kind: PluginFailure

    @property
    def summary(self) -> str:
        """One sentence naming the plugin, its distribution, what failed and the error."""
        origin = _describe_origin(self.distribution, self.version)
        phrase = _FAILURE_PHRASES[self.kind]
        return f"plugin {self.plugin!r} from {origin} {phrase}: {self.error}"


@attrs.frozen
class BlockedPlugin:
    """An entry point left out on purpose by ``EXECUTORS_BLOCK_PLUGINS`` or
    ``EXECUTORS_DISABLE_PLUGIN_AUTOLOAD``; never imported."""

    plugin: str
    distribution: str
    version: str
    #: which variable left it out, as a sentence for the user
    reason: str

    @property
    def summary(self) -> str:
        origin = _describe_origin(self.distribution, self.version)
        return f"plugin {self.plugin!r} from {origin} is not loaded: {self.reason}"


@attrs.frozen
class PluginInfo:
    """One registered plugin, as ``executors backends`` lists it beside the backends."""

    name: str
    distribution: str
    version: str
    #: the ``executors_*`` hooks it implements, sorted
    hooks: tuple[str, ...]


@attrs.frozen
class _Origin:
    plugin: str
    distribution: str
    version: str


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_Bar`` is ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(value: str | None) -> frozenset[str]:
    return frozenset(name.strip() for name in (value or "").split(",") if name.strip())


@attrs.frozen
class _Selection:
    """Which entry points the environment lets load."""

    autoload: bool
    wanted: frozenset[str]
    blocked: frozenset[str]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> _Selection:
        return cls(
            autoload=not environ.get(DISABLE_AUTOLOAD_VAR),
            wanted=_names(environ.get(PLUGINS_VAR)),
            blocked=_names(environ.get(BLOCK_VAR)),
        )

    def skip_reason(self, origin: _Origin) -> str | None:
        """Why ``origin`` must not load, or ``None`` if it may."""
        if self._matches(self.blocked, origin):
            return f"{BLOCK_VAR} names it"
        if not self.autoload and not self._matches(self.wanted, origin):
            return f"{DISABLE_AUTOLOAD_VAR} is set and {PLUGINS_VAR} does not name it"
        return None

    def unmatched(self, origins: Iterable[_Origin]) -> set[str]:
        """Names in ``EXECUTORS_PLUGINS`` that match no entry point (likely typos)."""
        seen = {name for o in origins for name in (o.plugin, _normalize(o.distribution))}
        return {name for name in self.wanted if name not in seen and _normalize(name) not in seen}

    @staticmethod
    def _matches(names: frozenset[str], origin: _Origin) -> bool:
        dist = _normalize(origin.distribution)
        return origin.plugin in names or any(_normalize(name) == dist for name in names)


def _origin_of(ep: importlib.metadata.EntryPoint) -> _Origin:
    dist = ep.dist
    if dist is None:
        return _Origin(ep.name, "<unknown>", "")
    # A METADATA file without Name or Version yields None at run time despite the stubs.
    return _Origin(ep.name, dist.name or "<unknown>", dist.version or "")


def _entry_points() -> list[tuple[_Origin, importlib.metadata.EntryPoint]]:
    """Every entry point of the group once per (distribution, name), sorted.

    A distribution can be seen twice (an editable install plus a duplicate ``sys.path``
    entry); the first one found on ``sys.path`` is the one Python would import.
    """
    unique: dict[tuple[str, str], tuple[_Origin, importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = _origin_of(ep)
        unique.setdefault((_normalize(origin.distribution), ep.name), (origin, ep))
    return [unique[key] for key in sorted(unique)]


def _summarize(err: BaseException) -> str:
    # Joined, not cut at the first line: pluggy puts the useful part on the second.
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    name = type(err).__name__
    return f"{name}: {text}" if text else name


def _as_backend(obj: object) -> Backend:
    """``obj`` if it satisfies the :class:`Backend` protocol; else raise :class:`PluginError`
    saying what is wrong with it."""
    if isinstance(obj, type):
        cls = obj.__qualname__
        msg = f"register() got the class {cls}, not a backend: pass an instance, register({cls}())"
        raise PluginError(msg)
    if not isinstance(obj, Backend):
        members = ("name", "capabilities", "options", "open")
        missing = ", ".join(member for member in members if not hasattr(obj, member))
        msg = f"register() got {obj!r}, which is not a Backend: it has no {missing}"
        raise PluginError(msg)
    _check_backend_members(obj)
    return obj


def _check_backend_members(backend: Backend) -> None:
    # Typed as object: the protocol check only proved that these attributes exist.
    name: object = backend.name
    if not isinstance(name, str) or not name or any(char.isspace() for char in name):
        msg = f"backend {backend!r} has name {name!r}: expected a non-empty name without spaces"
        raise PluginError(msg)
    capabilities: object = backend.capabilities
    options: object = backend.options
    open_: object = backend.open
    problem = None
    if not isinstance(capabilities, Capabilities):
        problem = f"capabilities is {capabilities!r}, not an executors.Capabilities"
    elif not isinstance(options, type):
        problem = f"options is {options!r}, not a class"
    elif not callable(open_):
        problem = "open is not callable"
    if problem is not None:
        msg = f"backend {name!r} is invalid: {problem}"
        raise PluginError(msg)


@attrs.define(eq=False)
class _Collector:
    """The ``register`` callback handed to one plugin's ``executors_register_backends``.

    Invariant: ``backends`` holds only objects that passed :func:`_as_backend`.
    """

    backends: list[Backend] = attrs.field(factory=list)
    # Kept so that a hook catching the PluginError cannot hide an invalid registration.
    rejected: list[PluginError] = attrs.field(factory=list)
    closed: bool = False

    def __call__(self, backend: object) -> None:
        if self.closed:
            msg = "register() was called after executors_register_backends returned"
            raise PluginError(msg)
        try:
            self.backends.append(_as_backend(backend))
        except PluginError as err:
            self.rejected.append(err)
            raise


def _collect_backends(impl: pluggy.HookImpl) -> list[Backend]:
    """Call one plugin's ``executors_register_backends`` and return what it registered.

    Raises whatever the hook raises, or :class:`PluginError` for a misuse of the hook.
    """
    if impl.wrapper or impl.hookwrapper:
        msg = "executors_register_backends must be a plain hook implementation, not a wrapper"
        raise PluginError(msg)
    collector = _Collector()
    # pluggy has verified that the impl takes a subset of the spec's arguments.
    arguments = {"register": collector}
    result = impl.function(*(arguments[name] for name in impl.argnames))
    collector.closed = True
    if inspect.iscoroutine(result):
        result.close()  # never awaited on purpose; closing avoids a RuntimeWarning
        msg = "executors_register_backends must be a plain function, not async"
        raise PluginError(msg)
    if result is not None:
        msg = f"executors_register_backends returned {result!r}: call register(backend) instead"
        raise PluginError(msg)
    if collector.rejected:
        raise collector.rejected[0]
    return collector.backends


@functools.cache
def _hook_names() -> tuple[str, ...]:
    """The name of every hook the specs declare, sorted."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    specs = (name for name in dir(_hookspecs) if pm.parse_hookspec_opts(_hookspecs, name))
    return tuple(sorted(specs))


def closest_hook(name: str) -> str | None:
    """The hook whose name is closest to ``name`` (a misspelt hook name), or ``None``
    when none is close.

    The ``executors_`` prefix every hook shares is left out of the comparison: it would
    make every name that has it look close.
    """
    known = {hook.removeprefix(_HOOK_PREFIX): hook for hook in _hook_names()}
    close = difflib.get_close_matches(name.removeprefix(_HOOK_PREFIX), known, n=1)
    return known[close[0]] if close else None


def _unknown_hook_message(name: str) -> str:
    message = f"unknown hook {name!r}: no executors hook has that name"
    close = closest_hook(name)
    if close is not None:
        return f"{message} (did you mean {close!r}?)"
    return f"{message}; the hooks are {', '.join(_hook_names())}"


def _check_known_hooks(pm: pluggy.PluginManager, plugin: object) -> None:
    """Raise if ``plugin`` implements a hook no spec declares (most likely a typo), which
    would otherwise never be called; the message names the closest hook."""
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                raise pluggy.PluginValidationError(plugin, _unknown_hook_message(caller.name))


def _no_hooks_error(plugin: object, origin: _Origin) -> PluginError:
    """What to tell the author of ``plugin``, which loaded but implements no hook."""
    unmarked = sorted(
        name
        for name in dir(plugin)
        if name.startswith(_HOOK_PREFIX) and inspect.isroutine(getattr(plugin, name, None))
    )
    if unmarked:
        names = ", ".join(unmarked)
        are, they, them = ("is", "it", "it") if len(unmarked) == 1 else ("are", "they", "each")
        msg = (
            f"{names} {are} not marked with @executors.hookimpl, so {they} would never be "
            f"called: decorate {them} with @executors.hookimpl"
        )
        return PluginError(msg)
    remedy = (
        "register it only once it does"
        if origin.distribution == RUNTIME
        else f"remove its entry point {origin.plugin!r} from the group {ENTRY_POINT_GROUP!r}"
    )
    msg = (
        "it has no function marked with @executors.hookimpl: implement "
        "executors_register_backends (to register a backend) or an observer hook, "
        f"marked with @executors.hookimpl, or {remedy}"
    )
    return PluginError(msg)


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(_hookspecs)
    return pm


@attrs.define(eq=False)
class Registry:
    """The registered plugins and their backends, and the plugins that failed."""

    _pm: pluggy.PluginManager = attrs.field(init=False, factory=_new_plugin_manager)
    # Invariant: the keys are exactly the names of the plugins registered in ``_pm``.
    _origins: dict[str, _Origin] = attrs.field(init=False, factory=dict)
    # Invariant: every value passed _as_backend and is keyed by its backend's name.
    _backends: dict[str, BackendInfo] = attrs.field(init=False, factory=dict)
    _broken: list[BrokenPlugin] = attrs.field(init=False, factory=list)
    _blocked: list[BlockedPlugin] = attrs.field(init=False, factory=list)
    # the observers of the last hooks_for() that had some, and its plugin manager
    _observer_pm: tuple[tuple[object, ...], pluggy.PluginManager] | None = attrs.field(
        init=False, default=None
    )

    @classmethod
    def from_entry_points(cls, environ: Mapping[str, str] | None = None) -> Registry:
        """Load every plugin of the ``executors`` entry-point group that ``environ``
        (``os.environ`` by default) lets load; see the module docstring."""
        selection = _Selection.from_environ(os.environ if environ is None else environ)
        registry = cls()
        entry_points = _entry_points()
        for origin, ep in entry_points:
            registry._load_entry_point(origin, ep, selection)
        for name in sorted(selection.unmatched(origin for origin, _ in entry_points)):
            logger.warning("%s names %r, but no installed plugin has that name", PLUGINS_VAR, name)
        return registry

    @classmethod
    def empty(cls) -> Registry:
        """A registry with no plugin; add them with :meth:`register_plugin`."""
        return cls()

    def register_plugin(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str = RUNTIME,
        version: str = "",
    ) -> None:
        """Register a plugin object or module whose hooks are marked with
        ``executors.hookimpl``, and the backends its ``executors_register_backends`` registers.

        Never raises for the plugin's faults: a plugin that fails is recorded in
        :meth:`broken` and logged, as one loaded from an entry point is.
        """
        origin = _Origin(name or self._pm.get_canonical_name(plugin), distribution, version)
        self._register(plugin, origin)

    def add_backend(
        self,
        backend: Backend,
        *,
        distribution: str = RUNTIME,
        version: str = "",
        plugin: str = RUNTIME,
    ) -> None:
        """Register one backend directly.

        Raises :class:`DuplicateBackendError` if its name is taken, and
        :class:`PluginError` if ``backend`` does not satisfy the :class:`Backend` protocol.
        """
        checked = _as_backend(backend)
        self._add(BackendInfo(checked.name, distribution, version, plugin, checked))

    def backend(self, name: str, *, source: str | None = None) -> Backend:
        """The backend registered as ``name``.

        ``source`` says where ``name`` came from, for the error: a provenance of
        :class:`LoadedConfig` (``"env EXECUTORS_BACKEND"``, ``"pyproject.toml
        [tool.executors] (/path)"``, ``"default"``, ...) or a phrase such as ``"--backend
        on the command line"``.

        Raises :class:`UnknownBackendError` saying where the name came from, which
        backends are installed, which is closest to ``name``, or why a plugin of that
        name is unavailable.
        """
        info = self._backends.get(name)
        if info is None:
            msg = self._explain_unknown(name, _where(name, source))
            raise UnknownBackendError(msg)
        return info.backend

    def backends(self) -> list[BackendInfo]:
        """Every registered backend, sorted by name."""
        return [self._backends[name] for name in sorted(self._backends)]

    def broken(self) -> list[BrokenPlugin]:
        """The plugins that failed, in the order they were loaded."""
        return list(self._broken)

    def blocked(self) -> list[BlockedPlugin]:
        """The entry points the environment left out, in the order they were found."""
        return list(self._blocked)

    def plugins(self) -> list[tuple[str, object]]:
        """Every registered plugin as ``(name, plugin)``, in registration order.

        A plugin whose import or ``executors_register_backends`` failed is not among them.
        """
        return [
            (name, plugin) for name, plugin in self._pm.list_name_plugin() if plugin is not None
        ]

    def hooks_for(self, observers: Sequence[object] = ()) -> pluggy.PluginManager:
        """The plugin manager whose hooks a pool calls: this registry's own, or, for a
        pool with ``observers`` of its own, one that holds every registered plugin and
        them (the last one made is reused for the same observers).

        Raises :class:`PluginError` naming an observer's hook that no spec declares (and
        the closest that does), or whose arguments do not match its spec.
        """
        if not observers:
            return self._pm
        cached = self._observer_pm
        if (
            cached is not None
            and len(cached[0]) == len(observers)
            and all(a is b for a, b in zip(cached[0], observers, strict=True))
        ):
            return cached[1]
        pm = _new_plugin_manager()
        for name, plugin in self.plugins():
            pm.register(plugin, name=name)
        for observer in observers:
            if pm.is_registered(observer):
                continue
            try:
                pm.register(observer)
                _check_known_hooks(pm, observer)
            except (ValueError, pluggy.PluginValidationError) as err:
                msg = f"observer {observer!r} cannot be used: {err}"
                raise PluginError(msg) from err
        # Holds the observers themselves, not their ids: an id is never reused meanwhile.
        self._observer_pm = (tuple(observers), pm)
        return pm

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its origin and hooks, in registration order."""
        return [self._plugin_info(name, plugin) for name, plugin in self.plugins()]

    def _plugin_info(self, name: str, plugin: object) -> PluginInfo:
        origin = self._origins[name]
        hooks = sorted(caller.name for caller in self._pm.get_hookcallers(plugin) or ())
        return PluginInfo(name, origin.distribution, origin.version, tuple(hooks))

    def _load_entry_point(
        self, origin: _Origin, ep: importlib.metadata.EntryPoint, selection: _Selection
    ) -> None:
        reason = selection.skip_reason(origin)
        if reason is not None:
            self._blocked.append(
                BlockedPlugin(origin.plugin, origin.distribution, origin.version, reason)
            )
            return
        try:
            plugin = ep.load()
        # Whatever a plugin raises at import time is its own fault and must not stop the
        # others. BaseExceptions (KeyboardInterrupt, SystemExit) still propagate.
        except Exception as err:
            self._record(origin, "import", err)
            return
        self._register(plugin, origin)

    def _register(self, plugin: object, origin: _Origin) -> None:
        self._observer_pm = None  # made before this plugin came
        try:
            self._add_to_plugin_manager(plugin, origin)
        except PluginError as err:
            self._record(origin, "duplicate", err)
            return
        except pluggy.PluginValidationError as err:
            self._record(origin, "validate", err)
            return
        if not self._pm.get_hookcallers(plugin):
            # It would do nothing: most likely its hooks lack the hookimpl marker.
            self._pm.unregister(plugin)
            self._record(origin, "no_hooks", _no_hooks_error(plugin, origin))
            return
        try:
            backends = self._call_register_backends(plugin)
        except Exception as err:  # the plugin's own bug; see _load_entry_point
            # A plugin that failed half-way is removed whole: no backend, no observer.
            self._pm.unregister(plugin)
            self._record(origin, "register_backends", err)
            return
        self._origins[origin.plugin] = origin
        self._add_plugin_backends(backends, origin)

    def _add_to_plugin_manager(self, plugin: object, origin: _Origin) -> None:
        """Raises :class:`PluginError` on a name conflict, ``PluginValidationError`` for a
        hook implementation that matches no spec or not its spec's arguments."""
        try:
            self._pm.register(plugin, name=origin.plugin)
        except ValueError as err:
            holder = self._pm.get_name(plugin) or origin.plugin
            existing = self._origins.get(holder)
            by = (
                _describe_origin(existing.distribution, existing.version) if existing else "unknown"
            )
            msg = f"plugin {origin.plugin!r} is already registered (as {holder!r} from {by})"
            raise PluginError(msg) from err
        try:
            _check_known_hooks(self._pm, plugin)
        except pluggy.PluginValidationError:
            self._pm.unregister(plugin)
            raise

    def _call_register_backends(self, plugin: object) -> list[Backend]:
        impls = self._pm.hook.executors_register_backends.get_hookimpls()
        return [
            backend
            for impl in impls
            if impl.plugin is plugin
            for backend in _collect_backends(impl)
        ]

    def _add_plugin_backends(self, backends: list[Backend], origin: _Origin) -> None:
        # A name conflict is no bug of the plugin's own: its other backends still register.
        for backend in backends:
            info = BackendInfo(
                backend.name, origin.distribution, origin.version, origin.plugin, backend
            )
            try:
                self._add(info)
            except DuplicateBackendError as err:
                self._record(origin, "duplicate", err)

    def _add(self, info: BackendInfo) -> None:
        existing = self._backends.get(info.name)
        if existing is not None:
            msg = (
                f"backend {info.name!r} from {_describe_origin(info.distribution, info.version)}"
                f" (plugin {info.plugin!r}) is already registered by"
                f" {_describe_origin(existing.distribution, existing.version)}"
                f" (plugin {existing.plugin!r}); the first one registered is kept:"
                f" uninstall one of them, or leave one out with {BLOCK_VAR}"
            )
            raise DuplicateBackendError(msg)
        self._backends[info.name] = info

    def _record(self, origin: _Origin, kind: PluginFailure, err: BaseException) -> None:
        broken = BrokenPlugin(
            plugin=origin.plugin,
            distribution=origin.distribution,
            version=origin.version,
            error=_summarize(err),
            traceback="".join(traceback.format_exception(err)),
            kind=kind,
        )
        self._broken.append(broken)
        logger.warning("%s", broken.summary)
        logger.debug("traceback of plugin %r:\n%s", broken.plugin, broken.traceback)

    def _explain_unknown(self, name: str, where: str) -> str:
        unavailable = self._why_unavailable(name)
        if unavailable is not None:
            return f"backend {name!r}{where} is unavailable: {unavailable}"
        names = sorted(self._backends)
        if names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = (
                f"unknown backend {name!r}{where}: installed backends are {', '.join(names)}{hint}"
            )
        else:
            message = (
                f"unknown backend {name!r}{where}: no backend is installed; install one with "
                "the core, for example `pip install 'executors-core[process]'` (or "
                "[thread], [coroutine], [ray])"
            )
        # A plugin that failed may have been the one to register ``name``.
        failed = sorted({b.plugin for b in self._broken if b.kind != "duplicate"})
        if failed:
            message += f"; plugins that failed to load: {', '.join(failed)}"
            message += " (see `executors backends`)"
        return message

    def _why_unavailable(self, name: str) -> str | None:
        """Why a plugin whose entry-point name is ``name`` registered no backend, if it
        failed or was left out: plugins usually name their entry point after their backend."""
        for broken in self._broken:
            if broken.plugin == name and broken.kind != "duplicate":
                return broken.summary
        for blocked in self._blocked:
            if blocked.plugin == name:
                return blocked.summary
        return None


def _where(name: str, source: str | None) -> str:
    """`` (backend = 'name' from <source>)``, for a message about backend ``name``; ``""``
    when the source is not known."""
    if source is None:
        return ""
    if source == "default":
        return (
            f" (backend = {name!r} by default; set backend in pyproject.toml "
            "[tool.executors], executors.toml or EXECUTORS_BACKEND to choose another)"
        )
    return f" (backend = {name!r} from {source})"


# The default registry is built once per process: importing plugins is slow and has
# side effects. The lock makes concurrent first calls share one build.
_default_lock = threading.RLock()
_default: Registry | None = None
# True while the default registry is being built: a plugin asking for it at import time
# would otherwise recurse into loading the plugins again.
_default_loading = False


def default_registry() -> Registry:
    """The process-wide registry, built from entry points and ``os.environ`` on first use."""
    global _default, _default_loading
    with _default_lock:
        if _default is None:
            if _default_loading:
                msg = "default_registry() was called while the plugins are loading"
                raise PluginError(msg)
            _default_loading = True
            try:
                _default = Registry.from_entry_points(os.environ)
            finally:
                _default_loading = False
        return _default


def reset_default_registry() -> None:
    """Forget the default registry, so the next :func:`default_registry` reloads (tests)."""
    global _default
    with _default_lock:
        _default = None
