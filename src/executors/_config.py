"""Pool configuration: validated attrs classes, loaded from layered sources.

Sources, lowest precedence first (each later one overrides the keys it sets):

1. defaults (the field defaults below)
2. ``[tool.executors]`` in ``pyproject.toml``
3. ``executors.toml`` (top-level keys), or the file named by ``EXECUTORS_CONFIG``
4. ``EXECUTORS_*`` environment variables
5. explicit overrides (keyword arguments of :func:`open_pool`, CLI ``--set``)

Backend-specific options live in a sub-table named after the backend
(``[tool.executors.process]``) and are validated by that backend's options class
through :func:`build_backend_options`. :func:`load_config` records where every value
came from, so each error names its source and ``executors config`` can show it.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import operator
import os
import re
import tomllib
import types
import typing
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeVar

import attrs

from ._exceptions import ConfigError, ConfigWarning

#: A "module:function" reference, or the callable itself (it must be importable by
#: reference where the backend runs it in another process).
CallableRef = str | Callable[..., Any]
WhenFull = Literal["wait", "reject"]
T = TypeVar("T")

_CPUS = os.cpu_count() or 1

#: ``EXECUTORS_*`` variables that are not pool options: the config-file switch and the
#: plugin manager's switches. Every other ``EXECUTORS_*`` variable must be an option,
#: so that a misspelt one is reported instead of silently ignored.
RESERVED_ENV_VARS: Final = frozenset(
    {
        "EXECUTORS_CONFIG",
        "EXECUTORS_DISABLE_PLUGIN_AUTOLOAD",
        "EXECUTORS_PLUGINS",
        "EXECUTORS_BLOCK_PLUGINS",
    }
)
_ENV_PREFIX: Final = "EXECUTORS_"
_DEFAULT: Final = "default"
_OVERRIDE: Final = "override"


@attrs.frozen
class _AtLeast:
    """Validator of a lower bound. ``None`` passes: optional fields mean "no limit" by it."""

    limit: int
    strict: bool = False

    @property
    def bound(self) -> str:
        return f"> {self.limit}" if self.strict else f">= {self.limit}"

    def __call__(self, inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
        # Phrased as "passes if in range" so that NaN, which fails every comparison, fails.
        if value is None or (value > self.limit if self.strict else value >= self.limit):
            return
        msg = f"{attr.name} = {value!r} is invalid: must be {self.bound}"
        raise ConfigError(msg)


_positive = _AtLeast(0, strict=True)
_non_negative = _AtLeast(0)
_at_least_one = _AtLeast(1)


# The checks below take ``object``: a value may be of any type when a caller bypasses the
# annotations (open_pool(**kwargs), pickled configs), and the message must still be clear.
def _callable_ref(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is None or callable(value):
        return
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        msg = (
            f"{attr.name} = {value!r} is invalid: expected 'module:function' "
            "(for example 'myapp.jobs:handle')"
        )
        raise ConfigError(msg)


def _when_full(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value not in ("wait", "reject"):
        msg = f"{attr.name} = {value!r} is invalid: must be 'wait' or 'reject'"
        raise ConfigError(msg)


def _backend_name(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = f"{attr.name} = {value!r} is invalid: must be a backend name such as 'process'"
        raise ConfigError(msg)


@attrs.frozen(kw_only=True)
class PoolConfig:
    """Everything a pool needs to know. Every knob is documented in
    ``docs/configuration.md``; defaults are chosen for long-running jobs."""

    #: name of the backend that provides executors
    backend: str = attrs.field(default="process", validator=_backend_name)
    #: the job function, "module:function" or a top-level callable; sync or async
    entrypoint: CallableRef | None = attrs.field(default=None, validator=_callable_ref)
    #: run once when an executor starts; its return value reaches jobs as ``ctx.state``
    setup: CallableRef | None = attrs.field(default=None, validator=_callable_ref)
    #: ready executors kept waiting for jobs
    idle_executors: int = attrs.field(default=1, validator=_non_negative)
    #: upper bound on live executors (starting, ready, busy and closing)
    max_executors: int = attrs.field(default=_CPUS, validator=_at_least_one)
    #: executors starting at the same time
    max_concurrent_initializations: int = attrs.field(
        default=min(_CPUS, 4), validator=_at_least_one
    )
    #: seconds an executor may take to start (setup included)
    initialize_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: seconds a job may run; ``None`` means no limit
    job_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: seconds an executor may take to close gracefully before it is killed
    close_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: seconds ``drain()`` lets running jobs finish before cancelling them
    drain_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    #: jobs an executor runs before it is recycled; ``None`` means reuse forever
    max_jobs_per_executor: int | None = attrs.field(default=None, validator=_at_least_one)
    #: log a warning when an executor uses more memory than this (MiB)
    memory_warn_mb: float | None = attrs.field(default=None, validator=_positive)
    #: kill an executor that uses more memory than this (MiB); its job ends MEMORY_LIMIT
    memory_limit_mb: float | None = attrs.field(default=None, validator=_positive)
    #: seconds between health checks of every executor
    ping_interval: float = attrs.field(default=2.5, validator=_positive)
    #: kill an executor whose ping goes unanswered this long; its job ends UNRESPONSIVE
    ping_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: failed acquisition cycles (every in-flight spawn failed) before a job fails
    acquire_attempts: int = attrs.field(default=3, validator=_at_least_one)
    #: executors a job may be launched on when launches fail before acceptance
    launch_attempts: int = attrs.field(default=3, validator=_at_least_one)
    #: first delay (seconds) before re-spawning after a failure; doubles per failure
    spawn_backoff: float = attrs.field(default=0.1, validator=_non_negative)
    #: the longest delay between spawn attempts
    spawn_backoff_max: float = attrs.field(default=10.0, validator=_non_negative)
    #: consecutive spawn failures after which the pool reports itself unhealthy
    consecutive_failure_limit: int = attrs.field(default=5, validator=_at_least_one)
    #: what ``submit`` does when ``max_pending`` jobs already wait: "wait" or "reject"
    when_full: WhenFull = attrs.field(default="wait", validator=_when_full)
    #: jobs accepted but waiting for an executor; ``None`` means no bound
    max_pending: int | None = attrs.field(default=None, validator=_non_negative)
    #: the backend's own options (the ``[tool.executors.<backend>]`` table), unvalidated
    backend_options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        broken = _first_broken_relation(attrs.asdict(self, recurse=False))
        if broken is not None:
            field, op, other = broken
            msg = (
                f"{field} = {getattr(self, field)!r} is invalid: must be {op} "
                f"{other} ({getattr(self, other)!r})"
            )
            raise ConfigError(msg)

    def evolve(self, **changes: Any) -> PoolConfig:
        """A copy with ``changes`` applied (and validated)."""
        return attrs.evolve(self, **changes)


# Pairs of fields whose values must be ordered, read "field op other". Checked once all
# sources are merged, because each side may come from a different source.
_RELATIONS: Final = (
    ("idle_executors", "<=", "max_executors"),
    ("spawn_backoff_max", ">=", "spawn_backoff"),
    ("memory_warn_mb", "<=", "memory_limit_mb"),
)
_COMPARE: Final = {"<=": operator.le, ">=": operator.ge}
_FLIPPED: Final = {"<=": ">=", ">=": "<="}


def _first_broken_relation(values: Mapping[str, object]) -> tuple[str, str, str] | None:
    """The first relation ``values`` break; ``None`` (no limit) on either side never breaks."""
    for field, op, other in _RELATIONS:
        a, b = values[field], values[other]
        if isinstance(a, int | float) and isinstance(b, int | float) and not _COMPARE[op](a, b):
            return field, op, other
    return None


# ---------------------------------------------------------------------------------------
# Value kinds: type checks for typed values (TOML, overrides) and parsing of text (env).

_Base = Literal["int", "float", "bool", "str", "ref"]
_SCALAR_BASES: Final[Mapping[object, _Base]] = {
    int: "int",
    float: "float",
    bool: "bool",
    str: "str",
}
_NOUNS: Final[Mapping[_Base, str]] = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "ref": "a 'module:function' string",
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@attrs.frozen
class _Kind:
    """The values a field takes, derived from its annotation."""

    base: _Base
    optional: bool = False
    choices: tuple[str, ...] = ()

    def expected(self, validator: object, *, text: bool) -> str:
        """What to write instead of a wrong value, for an error message."""
        what = " or ".join(map(repr, self.choices)) or _NOUNS[self.base]
        if isinstance(validator, _AtLeast):
            what += f" {validator.bound}"
        if self.optional and text:
            what += ', or "none"'
        return f"expected {what}"


def _kind_of(hint: object) -> _Kind | None:
    """The kind of an annotation; ``None`` for types whose values are passed unchecked."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    optional = type(None) in members
    rest = [m for m in members if m is not type(None)]
    if any(m is Callable or typing.get_origin(m) is Callable for m in rest):
        return _Kind("ref", optional)
    if len(rest) != 1:
        return None
    (only,) = rest
    if typing.get_origin(only) is Literal:
        return _Kind("str", optional, tuple(map(str, typing.get_args(only))))
    base = _SCALAR_BASES.get(only)
    return None if base is None else _Kind(base, optional)


class _Mismatch(Exception):
    """A value is not of its field's kind; the caller knows the source to report."""


def _accepts(base: _Base, value: object) -> bool:
    # bool is an int subclass, but `idle_executors = true` is a mistake, never a count.
    if isinstance(value, bool):
        return base == "bool"
    if base == "int":
        return isinstance(value, int)
    if base == "float":
        return isinstance(value, int | float) and math.isfinite(value)
    if base == "ref":
        return isinstance(value, str) or callable(value)
    return base == "str" and isinstance(value, str)


def _coerce(kind: _Kind, value: object) -> object:
    """``value`` checked against ``kind``; ints widen to float. Raises :class:`_Mismatch`."""
    if value is None and kind.optional:
        return None
    if not _accepts(kind.base, value) or (kind.choices and value not in kind.choices):
        raise _Mismatch
    if kind.base == "float" and isinstance(value, int):
        return float(value)
    return value


def _parse(kind: _Kind, text: str) -> object:
    """Text (an environment variable, a ``--set`` value) as a value of ``kind``."""
    word = text.strip()
    if kind.optional and word.lower() in ("", "none"):
        return None
    try:
        if kind.base == "int":
            return int(word)
        if kind.base == "float":
            return float(word)
    except ValueError:
        raise _Mismatch from None
    if kind.base == "bool" and word.lower() in _TRUE | _FALSE:
        return word.lower() in _TRUE
    return word


def _is_text(source: str) -> bool:
    # Environment variables and CLI ``--set`` values (passed as overrides) are only text.
    return source == _OVERRIDE or source.startswith("env ")


class _Problems:
    """The configuration errors found so far: each key is checked on its own, and all
    that are wrong are reported together, not only the first."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    @contextlib.contextmanager
    def each(self) -> Iterator[None]:
        """Collects the ConfigError the block raises, if any."""
        try:
            yield
        except ConfigError as err:
            self.errors.append(err)

    def raise_any(self) -> None:
        """One ConfigError for everything collected: the error itself when there is
        one, else all of their messages, a line each."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = "\n".join(f"  {err}" for err in self.errors)
            msg = f"{len(self.errors)} settings are invalid:\n{lines}"
            raise ConfigError(msg)


def _invalid(source: str, key: str, value: object, rule: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {value!r} is invalid: {rule}")


def _checked(
    kind: _Kind | None, value: object, *, key: str, source: str, validator: object
) -> object:
    """``value`` type-checked (parsed first if it is text from env or ``--set``)."""
    if kind is None:
        return value
    text = value if isinstance(value, str) and _is_text(source) else None
    try:
        return _coerce(kind, value if text is None else _parse(kind, text))
    except _Mismatch:
        rule = kind.expected(validator, text=text is not None)
        raise _invalid(source, key, value, rule) from None


def _suggest(word: str, candidates: Iterable[str] | Mapping[str, str]) -> str:
    """``"did you mean 'x'?"`` for the closest candidate, ignoring case, or ``""``.

    A mapping compares its keys and suggests their values, so that a shared prefix
    such as ``EXECUTORS_`` does not make every name look close.
    """
    shown = candidates if isinstance(candidates, Mapping) else {c: c for c in candidates}
    folded = {key.lower(): name for key, name in shown.items()}
    close = difflib.get_close_matches(word.lower(), folded, n=1)
    return f"did you mean {folded[close[0]]!r}?" if close else ""


def _unknown_key(
    source: str, key: str, value: object, valid: Iterable[str], *, prefix: str = ""
) -> ConfigError:
    """``key`` is ``prefix`` + one of ``valid`` misspelt; the prefix is left out of the
    comparison, since a prefix every name shares makes every name look close.

    The valid keys are listed when nothing is close, and always for a backend's options
    (``prefix``), which users know less well than the pool's own settings.
    """
    names = sorted(prefix + name for name in valid)
    listing = f"valid keys are {', '.join(names)}" if names else "this table takes no keys"
    suggestion = _suggest(key.removeprefix(prefix), {n.removeprefix(prefix): n for n in names})
    hints = [suggestion] if suggestion and not prefix else [suggestion, listing]
    return _invalid(source, key, value, "unknown key; " + " ".join(filter(None, hints)))


# ---------------------------------------------------------------------------------------
# Sources: each gives a _Layer of settings; _merge applies them in precedence order.

_ATTRS: Final = attrs.fields_dict(PoolConfig)
_POOL_HINTS: Final = typing.get_type_hints(PoolConfig)
#: Every field settable by key, in field order. ``backend_options`` is absent: it is set
#: through backend tables, ``EXECUTORS_<BACKEND>__<OPTION>`` or dotted overrides.
_FIELD_KINDS: Final[Mapping[str, _Kind]] = {
    name: kind
    for name in _ATTRS
    if name != "backend_options" and (kind := _kind_of(_POOL_HINTS[name])) is not None
}
if len(_FIELD_KINDS) != len(_ATTRS) - 1:  # a new field of a type _kind_of does not know
    _msg = f"unsupported PoolConfig field types: {set(_ATTRS) - set(_FIELD_KINDS)}"
    raise TypeError(_msg)


@attrs.frozen
class _Setting:
    value: object
    #: provenance text, e.g. "env EXECUTORS_IDLE_EXECUTORS"
    source: str


def _field_setting(source: str, name: str, value: object) -> _Setting:
    """A PoolConfig field's value, type-checked and run through the field's validator, so
    a bad value is reported with its source even when a higher source overrides it."""
    attr = _ATTRS[name]
    checked = _checked(_FIELD_KINDS[name], value, key=name, source=source, validator=attr.validator)
    try:
        if attr.validator is not None:
            attr.validator(None, attr, checked)
    except ConfigError as err:
        msg = f"{source}: {err}"
        raise ConfigError(msg) from err
    return _Setting(checked, source)


def _same(name: str) -> str:
    return name


def _env_spelling(backend: str) -> str:
    return backend.upper().replace("-", "_").replace(".", "_")


@attrs.define
class _Layer:
    """The settings one source gives."""

    fields: dict[str, _Setting] = attrs.Factory(dict)
    #: backend table name, as this source spells it -> option -> setting
    tables: dict[str, dict[str, _Setting]] = attrs.Factory(dict)
    #: options for whichever backend ends up selected (the ``backend_options`` override)
    selected: dict[str, _Setting] = attrs.Factory(dict)
    #: how this source spells a backend's name (environment: upper case)
    spell: Callable[[str], str] = _same

    def options_for(self, backend: str) -> dict[str, _Setting]:
        return {**self.tables.get(self.spell(backend), {}), **self.selected}


def _default_layer() -> _Layer:
    return _Layer({name: _Setting(_ATTRS[name].default, _DEFAULT) for name in _FIELD_KINDS})


@attrs.frozen
class _FileSource:
    """Names a config file and its tables in provenance and messages."""

    path: Path
    #: dotted name of the table holding the options ("tool.executors"), "" for top level
    table: str = ""

    @property
    def label(self) -> str:
        where = f" [{self.table}]" if self.table else ""
        return f"{self.path.name}{where} ({self.path})"

    def header(self, backend: str) -> str:
        """The header of ``backend``'s table in this file."""
        return f"[{self.table}.{backend}]" if self.table else f"[{backend}]"

    def sub(self, backend: str) -> str:
        return f"{self.path.name} {self.header(backend)} ({self.path})"


def _read_toml(path: Path) -> dict[str, Any]:
    where = f"{path.name} ({path})"
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as err:
        msg = f"{where}: invalid TOML: {err}"
        raise ConfigError(msg) from err
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{where}: cannot be read: {err}"
        raise ConfigError(msg) from err


def _table_layer(table: Mapping[str, object], source: _FileSource, problems: _Problems) -> _Layer:
    """Top-level keys are pool fields; sub-tables are (potential) backend tables."""
    layer = _Layer()
    for key, value in table.items():
        with problems.each():
            _read_table_key(layer, source, key, value)
    return layer


def _read_table_key(layer: _Layer, source: _FileSource, key: str, value: object) -> None:
    if key in _FIELD_KINDS:
        layer.fields[key] = _field_setting(source.label, key, value)
    elif key == "backend_options":
        example = source.header("process")
        rule = f"put backend options in a table named after the backend, such as {example}"
        raise _invalid(source.label, key, value, rule)
    elif key == "tool" and not source.table:
        # A snippet copied from pyproject.toml would otherwise pass as a backend table.
        rule = "this file takes settings at the top level; [tool.executors] is for pyproject.toml"
        raise _invalid(source.label, key, value, rule)
    elif isinstance(value, dict):
        sub = source.sub(key)
        layer.tables[key] = {option: _Setting(v, sub) for option, v in value.items()}
    else:
        raise _unknown_key(source.label, key, value, _FIELD_KINDS)


def _pyproject_layer(directory: Path, problems: _Problems) -> _Layer:
    path = directory / "pyproject.toml"
    if not path.exists():
        return _Layer()
    tool = _read_toml(path).get("tool")
    table = tool.get("executors") if isinstance(tool, dict) else None
    if table is None:
        return _Layer()
    source = _FileSource(path, "tool.executors")
    if not isinstance(table, dict):
        raise _invalid(source.label, "tool.executors", table, "expected a table")
    return _table_layer(table, source, problems)


def _config_file(directory: Path, environ: Mapping[str, str]) -> Path | None:
    """``executors.toml`` in ``directory``, or the file ``EXECUTORS_CONFIG`` names (relative
    to ``directory``); ``None`` when there is no file to read."""
    named = environ.get("EXECUTORS_CONFIG", "")
    if not named:
        path = directory / "executors.toml"
        return path if path.exists() else None
    path = (directory / Path(named).expanduser()).resolve()
    if not path.exists():
        msg = (
            f"env EXECUTORS_CONFIG = {named!r} is invalid: no such file ({path}); "
            "point it at a TOML file or unset it"
        )
        raise ConfigError(msg)
    return path


def _config_file_layer(directory: Path, environ: Mapping[str, str], problems: _Problems) -> _Layer:
    path = _config_file(directory, environ)
    if path is None:
        return _Layer()
    return _table_layer(_read_toml(path), _FileSource(path), problems)


def _env_layer(environ: Mapping[str, str], problems: _Problems) -> _Layer:
    layer = _Layer(spell=_env_spelling)
    # Sorted, so that bad variables are reported in the same order every time.
    for name, text in sorted(environ.items()):
        if name.startswith(_ENV_PREFIX) and name not in RESERVED_ENV_VARS:
            with problems.each():
                _read_env_var(layer, name, text)
    return layer


def _read_env_var(layer: _Layer, name: str, text: str) -> None:
    source = f"env {name}"
    rest = name.removeprefix(_ENV_PREFIX)
    backend, double_underscore, option = rest.partition("__")
    key = rest.lower()
    if double_underscore and backend and option:
        layer.tables.setdefault(backend.upper(), {})[option.lower()] = _Setting(text, source)
    elif key in _FIELD_KINDS:
        layer.fields[key] = _field_setting(source, key, text)
    elif key == "backend_options":
        rule = "set each backend option as EXECUTORS_<BACKEND>__<OPTION>"
        raise _invalid(source, key, text, rule)
    else:
        known = {var.removeprefix(_ENV_PREFIX): var for var in RESERVED_ENV_VARS}
        known |= {field: _ENV_PREFIX + field.upper() for field in _FIELD_KINDS}
        hint = _suggest(key, known) or (
            "pool options are EXECUTORS_<OPTION> (such as EXECUTORS_IDLE_EXECUTORS), "
            "backend options EXECUTORS_<BACKEND>__<OPTION>"
        )
        # Another program's variable may share the prefix (EXECUTORS_HOME): warned of,
        # never fatal, so that it cannot stop every pool.
        msg = f"{source}: {key} = {text!r} is ignored: unknown variable; {hint}"
        warnings.warn(msg, ConfigWarning, stacklevel=2)


def _override_layer(overrides: Mapping[str, object], problems: _Problems) -> _Layer:
    layer = _Layer()
    for key, value in overrides.items():
        with problems.each():
            _read_override(layer, key, value)
    return layer


def _read_override(layer: _Layer, key: str, value: object) -> None:
    backend, dot, option = key.partition(".")
    if key == "backend_options":
        layer.selected.update(_override_options(value))
    elif dot and backend and option:
        layer.tables.setdefault(backend, {})[option] = _Setting(value, _OVERRIDE)
    elif key in _FIELD_KINDS:
        layer.fields[key] = _field_setting(_OVERRIDE, key, value)
    else:
        raise _unknown_key(_OVERRIDE, key, value, [*_FIELD_KINDS, "<backend>.<option>"])


def _override_options(value: object) -> dict[str, _Setting]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        rule = "expected a mapping of option names to values"
        raise _invalid(_OVERRIDE, "backend_options", value, rule)
    return {key: _Setting(v, _OVERRIDE) for key, v in value.items()}


# ---------------------------------------------------------------------------------------
# Merging, and the result.


class ConfigRow(NamedTuple):
    """One line of ``executors config``."""

    key: str
    value: object
    source: str


def _read_only(provenance: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(provenance))


@attrs.frozen
class LoadedConfig:
    """A :class:`PoolConfig` and where each of its values came from."""

    config: PoolConfig
    #: key -> source ("default", "pyproject.toml [tool.executors] (/abs/pyproject.toml)",
    #: "executors.toml (/abs/executors.toml)", "env EXECUTORS_IDLE_EXECUTORS", "override")
    #: for every PoolConfig field and every "<backend>.<option>" of the selected backend.
    #: ``backend_options`` maps to the sources of its options, joined by "; ".
    provenance: Mapping[str, str] = attrs.field(converter=_read_only)

    @classmethod
    def of(cls, config: PoolConfig, source: str = "PoolConfig") -> LoadedConfig:
        """A config built in code rather than loaded: every value comes from ``source``."""
        keys = [*attrs.fields_dict(PoolConfig)]
        keys += [f"{config.backend}.{option}" for option in config.backend_options]
        return cls(config=config, provenance=dict.fromkeys(keys, source))

    def source(self, key: str) -> str:
        """Where ``key`` (a field name or "<backend>.<option>") came from.

        Raises :class:`KeyError` for a key that is neither.
        """
        return self.provenance[key]

    def rows(self) -> list[ConfigRow]:
        """(key, value, source) for every field in field order, then the options of the
        selected backend; ``backend_options`` itself is shown through its options."""
        backend = self.config.backend
        fields = [(name, getattr(self.config, name)) for name in _FIELD_KINDS]
        options = [(f"{backend}.{o}", v) for o, v in self.config.backend_options.items()]
        return [ConfigRow(k, v, self.provenance.get(k, "unknown")) for k, v in fields + options]


def _check_relations(chosen: Mapping[str, _Setting]) -> None:
    broken = _first_broken_relation({key: s.value for key, s in chosen.items()})
    if broken is not None:
        field, op, other = broken
        if chosen[field].source == _DEFAULT != chosen[other].source:
            # Blame the value the user set, not the default it collides with.
            field, op, other = other, _FLIPPED[op], field
        mine, theirs = chosen[field], chosen[other]
        rule = f"must be {op} {other} ({theirs.value!r}, from {theirs.source})"
        raise _invalid(mine.source, field, mine.value, rule)


def _merge(layers: list[_Layer]) -> LoadedConfig:
    # Later layers win: a dict comprehension keeps the last value of each key, and the
    # default layer, which has every field, fixes the order of keys to field order.
    chosen = {key: s for layer in layers for key, s in layer.fields.items()}
    backend = str(chosen["backend"].value)
    options = {key: s for layer in layers for key, s in layer.options_for(backend).items()}
    _check_relations(chosen)
    values: dict[str, Any] = {key: s.value for key, s in chosen.items()}
    config = PoolConfig(**values, backend_options={key: s.value for key, s in options.items()})
    provenance = {key: s.source for key, s in chosen.items()}
    option_sources = dict.fromkeys(s.source for s in options.values())
    provenance["backend_options"] = "; ".join(option_sources) or _DEFAULT
    provenance.update({f"{backend}.{key}": s.source for key, s in options.items()})
    return LoadedConfig(config=config, provenance=provenance)


def load_config(
    overrides: Mapping[str, object] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Merge defaults, ``pyproject.toml``, ``executors.toml``, ``EXECUTORS_*`` variables and
    ``overrides`` (in that order of precedence, key by key) into a validated config.

    ``directory`` holds the two files (default: the current directory); ``environ``
    defaults to :data:`os.environ`. ``overrides`` keys are field names, "<backend>.<option>",
    or ``backend_options`` (a mapping for the selected backend); string values are parsed
    like environment variables, because the CLI's ``--set key=value`` passes text.

    Raises :class:`ConfigError` naming the source, key, value and what is allowed, for any
    unknown key, wrong type, out-of-range value or unreadable file: one error for all of
    them, a line each, when there are several. An ``EXECUTORS_*`` variable that is no
    setting is ignored with a :class:`ConfigWarning`.
    """
    env = os.environ if environ is None else environ
    where = (Path.cwd() if directory is None else Path(directory)).resolve()
    problems = _Problems()
    layers = [_default_layer()]
    sources: list[Callable[[], _Layer]] = [
        lambda: _pyproject_layer(where, problems),
        lambda: _config_file_layer(where, env, problems),
        lambda: _env_layer(env, problems),
        lambda: _override_layer(overrides or {}, problems),
    ]
    for source in sources:
        with problems.each():  # a file that cannot be read, a bad EXECUTORS_CONFIG
            layers.append(source())
    # Relations between settings are checked once every setting is valid on its own.
    problems.raise_any()
    return _merge(layers)


# ---------------------------------------------------------------------------------------
# A backend's own options.


def _init_params(cls: type) -> dict[str, attrs.Attribute[Any]]:
    if not attrs.has(cls):
        msg = f"{cls.__qualname__} is not an attrs class; a backend's options must be one"
        raise TypeError(msg)
    return {a.alias or a.name: a for a in attrs.fields(cls) if a.init}


#: each options class's resolved annotations: read at every open_pool, where typing
#: would compile each string annotation again
_HINTS: weakref.WeakKeyDictionary[type, dict[str, object]] = weakref.WeakKeyDictionary()


def _type_hints(cls: type) -> dict[str, object]:
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            hints = _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):
            # Annotations naming types that cannot be resolved here (yet): check no
            # types then, the class's own validators and converters still run.
            return {}
    return hints


def build_backend_options(options_cls: type[T], loaded: LoadedConfig) -> T:
    """An instance of a backend's attrs options class, built from the selected backend's
    options in ``loaded``. Text from env or ``--set`` is parsed by the field's type.

    Raises :class:`ConfigError` naming the source (file and table, variable or override),
    key, value and rule for an unknown option (listing the valid ones), a missing required
    option, a value of the wrong type, or a value the class's validators reject; one
    error for all the options that are wrong, a line each.
    """
    return _build_backend_options(options_cls, loaded)[0]


def typed_backend_options(options_cls: type, loaded: LoadedConfig) -> dict[str, object]:
    """The selected backend's options in ``loaded`` as :func:`build_backend_options`
    passes them to ``options_cls``: text from env or ``--set`` parsed by the field's type.
    A :class:`PoolConfig` can carry them on as ``backend_options`` once their sources are
    no longer known (a value still text would then be refused as the wrong type).

    Raises :class:`ConfigError` as :func:`build_backend_options` does.
    """
    return _build_backend_options(options_cls, loaded)[1]


def _build_backend_options(
    options_cls: type[T], loaded: LoadedConfig
) -> tuple[T, dict[str, object]]:
    """The options instance, and the keyword arguments it was built from."""
    params = _init_params(options_cls)
    backend = loaded.config.backend
    given = dict(loaded.config.backend_options)
    sources = {o: loaded.provenance.get(f"{backend}.{o}", "PoolConfig") for o in given}
    hints = _type_hints(options_cls)
    kwargs: dict[str, object] = {}
    problems = _Problems()
    for option, value in given.items():
        with problems.each():
            key, attr = f"{backend}.{option}", params.get(option)
            if attr is None:
                raise _unknown_key(sources[option], key, value, params, prefix=f"{backend}.")
            kind = _kind_of(hints.get(attr.name))
            checked = _checked(
                kind, value, key=key, source=sources[option], validator=attr.validator
            )
            _validate_alone(attr, checked, backend, {option: value}, sources)
            kwargs[option] = checked
    with problems.each():
        _check_required(backend, params, kwargs)
    problems.raise_any()
    try:
        return options_cls(**kwargs), kwargs
    except (TypeError, ValueError) as err:
        raise _rejected(err, backend, given, sources) from err


def _validate_alone(
    attr: attrs.Attribute[Any],
    value: object,
    backend: str,
    given: Mapping[str, object],
    sources: Mapping[str, str],
) -> None:
    """Runs ``attr``'s validator on ``value`` alone, so that every option out of range is
    reported, not only the first the class meets. A validator that needs the other
    options (it reads the instance), or that expects what a converter makes of the
    value, is left to the class, which runs them all again."""
    if attr.validator is None or attr.converter is not None:
        return
    try:
        attr.validator(None, attr, value)
    except (TypeError, ValueError) as err:
        raise _rejected(err, backend, given, sources) from err
    except Exception:
        # It reads the instance (there is none here): the class runs it with the others.
        return


def _check_required(
    backend: str, params: Mapping[str, attrs.Attribute[Any]], kwargs: Mapping[str, object]
) -> None:
    for name, attr in params.items():
        if attr.default is attrs.NOTHING and name not in kwargs:
            msg = (
                f"backend {backend!r} needs option {name!r}: set it in "
                f"[tool.executors.{backend}] in pyproject.toml, [{backend}] in "
                f"executors.toml, or {_ENV_PREFIX}{_env_spelling(backend)}__{name.upper()}"
            )
            raise ConfigError(msg)


def _reason(err: BaseException) -> str:
    # attrs' own validators pass (message, attribute, ...) as args: keep the message only.
    first = err.args[0] if err.args else None
    return first if isinstance(first, str) else str(err)


def _culprit(err: BaseException, given: Mapping[str, object]) -> str | None:
    """The option an options-class error is about: the attribute attrs' validators
    attach, else the only given option its message names."""
    for arg in err.args:
        if isinstance(arg, attrs.Attribute) and (arg.alias or arg.name) in given:
            return arg.alias or arg.name
    text = _reason(err)
    named = [o for o in given if re.search(rf"\b{re.escape(o)}\b", text)]
    return named[0] if len(named) == 1 else None


def _rejected(
    err: BaseException, backend: str, given: Mapping[str, object], sources: Mapping[str, str]
) -> ConfigError:
    reason, option = _reason(err), _culprit(err, given)
    if option is None:
        settings = ", ".join(f"{backend}.{o} = {v!r} ({sources[o]})" for o, v in given.items())
        return ConfigError(f"backend {backend!r} rejected its options ({settings}): {reason}")
    # A validator in our own style already says "<option> = <value> is invalid: <rule>".
    rule = reason.partition(" is invalid: ")[2] if reason.startswith(f"{option} = ") else ""
    return _invalid(sources[option], f"{backend}.{option}", given[option], rule or reason)
