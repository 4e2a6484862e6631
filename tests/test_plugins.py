"""Plugin loading and the backend registry, against real distributions on disk.

Each fake distribution is a ``*.dist-info`` directory with METADATA and
entry_points.txt plus its module, on a ``sys.path`` entry of its own test, so
``importlib.metadata`` finds it exactly as it finds an installed one. Every test selects
its own fake plugins through ``environ``, so the plugins installed in the virtualenv
never change the outcome.
"""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from typing import TYPE_CHECKING

import attrs
import pytest

from executors._exceptions import DuplicateBackendError, PluginError, UnknownBackendError
from executors._executor import Backend, Capabilities
from executors._hookspecs import hookimpl
from executors._plugins import Registry, closest_hook, default_registry, reset_default_registry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from executors._config import PoolConfig
    from executors._executor import ExecutorFactory

CAPABILITIES = Capabilities(
    isolates_crashes=False,
    can_kill_running_job=False,
    measures_memory=False,
    sync_entrypoints=True,
    async_entrypoints=True,
)


@attrs.define
class FakeOptions:
    pass


@attrs.frozen
class FakeBackend:
    name: str
    capabilities: Capabilities = CAPABILITIES
    options: type = FakeOptions

    def open(
        self, config: PoolConfig, options: object
    ) -> AbstractAsyncContextManager[ExecutorFactory]:
        raise NotImplementedError


class RuntimePlugin:
    """A plugin object registered in code, registering the backends it is given."""

    def __init__(self, *backends: object) -> None:
        self.backends = backends

    @hookimpl
    def executors_register_backends(self, register: Callable[[object], None]) -> None:
        for backend in self.backends:
            register(backend)


class Observer:
    """A plugin with no backend: only a lifecycle hook."""

    @hookimpl
    def executors_executor_ready(self, pool_name: str, executor_id: str) -> None:
        pass


# The same fake backend as FakeBackend, for modules imported from the fake distributions.
BACKEND_SOURCE = """
from executors._executor import Capabilities
from executors._hookspecs import hookimpl

class Options:
    pass

class ModuleBackend:
    capabilities = Capabilities(
        isolates_crashes=False,
        can_kill_running_job=False,
        measures_memory=False,
        sync_entrypoints=True,
        async_entrypoints=True,
    )
    options = Options

    def __init__(self, name):
        self.name = name

    def open(self, config, options):
        raise NotImplementedError
"""


def registering(*names: str) -> str:
    """Source of a plugin module registering one ModuleBackend per name."""
    hook = f"""
@hookimpl
def executors_register_backends(register):
    for name in {names!r}:
        register(ModuleBackend(name))
"""
    return BACKEND_SOURCE + hook


def hook_body(body: str) -> str:
    """Source of a plugin module whose register hook runs ``body``."""
    hook = "\n@hookimpl\ndef executors_register_backends(register):\n"
    return BACKEND_SOURCE + hook + textwrap.indent(textwrap.dedent(body), "    ")


@attrs.define
class FakeSite:
    """A directory on ``sys.path`` holding fake distributions."""

    path: Path
    # Module names imported from here, removed from sys.modules after the test.
    modules: list[str] = attrs.field(factory=list)

    def add(
        self,
        dist: str,
        modules: Mapping[str, str],
        *,
        entry_points: Mapping[str, str] | None = None,
        version: str = "1.0",
    ) -> None:
        """Write distribution ``dist`` with ``modules`` (name -> source); its entry points
        default to one per module, named after the module."""
        eps = entry_points if entry_points is not None else {m: m for m in modules}
        info = self.path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        (info / "METADATA").write_text(metadata)
        lines = "".join(f"{name} = {value}\n" for name, value in eps.items())
        (info / "entry_points.txt").write_text(f"[executors]\n{lines}")
        for module, source in modules.items():
            (self.path / f"{module}.py").write_text(source)
            self.modules.append(module)
        # Directory listings are cached by mtime, which may not have ticked yet.
        importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    fake = FakeSite(tmp_path / "site")
    fake.path.mkdir()
    monkeypatch.syspath_prepend(fake.path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def only(*names: str) -> dict[str, str]:
    """An environment that loads only the plugins ``names``."""
    return {"EXECUTORS_DISABLE_PLUGIN_AUTOLOAD": "1", "EXECUTORS_PLUGINS": ",".join(names)}


def test_good_plugin_is_listed_with_distribution_and_version(site: FakeSite) -> None:
    site.add("fake-good", {"fakegood": registering("alpha", "beta")}, version="1.2.3")

    registry = Registry.from_entry_points(only("fakegood"))

    assert [(b.name, b.distribution, b.version, b.plugin) for b in registry.backends()] == [
        ("alpha", "fake-good", "1.2.3", "fakegood"),
        ("beta", "fake-good", "1.2.3", "fakegood"),
    ]
    assert registry.backend("alpha").name == "alpha"
    assert registry.backends()[0].capabilities == CAPABILITIES
    assert registry.broken() == []
    assert "fakegood" not in [blocked.plugin for blocked in registry.blocked()]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import missing_dependency_xyz\n", "ModuleNotFoundError: No module named"),
        ("def broken(:\n", "SyntaxError: "),
        ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ],
)
def test_plugin_that_fails_to_import_is_reported_and_others_load(
    site: FakeSite, source: str, error: str
) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    site.add("fake-bad", {"fakebad": source}, version="0.3")
    site.add("fake-z", {"fakez": registering("z")})

    registry = Registry.from_entry_points(only("fakea", "fakebad", "fakez"))

    assert [b.name for b in registry.backends()] == ["a", "z"]
    [broken] = registry.broken()
    assert (broken.plugin, broken.distribution, broken.version) == ("fakebad", "fake-bad", "0.3")
    assert broken.kind == "import"
    assert broken.error.startswith(error)
    assert "\n" not in broken.error
    assert broken.traceback.startswith("Traceback")
    assert "fakebad" in broken.summary
    assert "fake-bad 0.3 failed to import" in broken.summary
    assert [name for name, _ in registry.plugins()] == ["fakea", "fakez"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("register(ModuleBackend('early'))\nraise ValueError('bad config')", "ValueError: bad"),
        ("register(object())", "PluginError: register() got <object object"),
        ("register(ModuleBackend)", "PluginError: register() got the class ModuleBackend"),
        ("register(ModuleBackend('has space'))", "PluginError: backend <"),
        (
            "try:\n    register(42)\nexcept Exception:\n    pass",
            "PluginError: register() got 42, which is not a Backend: it has no name",
        ),
        ("return [ModuleBackend('returned')]", "PluginError: executors_register_backends returned"),
    ],
    ids=["raises", "object", "class", "bad-name", "swallowed", "returned"],
)
def test_plugin_whose_register_hook_fails_is_reported_and_removed_whole(
    site: FakeSite, body: str, error: str
) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    site.add("fake-hook", {"fakehook": hook_body(body)}, version="2.0")

    registry = Registry.from_entry_points(only("fakea", "fakehook"))

    [broken] = registry.broken()
    assert (broken.plugin, broken.distribution, broken.kind) == (
        "fakehook",
        "fake-hook",
        "register_backends",
    )
    assert broken.error.startswith(error)
    # Nothing of a half-registered plugin stays: neither its backends nor its observers.
    assert [b.name for b in registry.backends()] == ["a"]
    assert [name for name, _ in registry.plugins()] == ["fakea"]


def test_async_register_hook_is_reported(site: FakeSite) -> None:
    source = BACKEND_SOURCE + (
        "\n@hookimpl\nasync def executors_register_backends(register):\n"
        "    register(ModuleBackend('x'))\n"
    )
    site.add("fake-async", {"fakeasync": source})

    registry = Registry.from_entry_points(only("fakeasync"))

    [broken] = registry.broken()
    assert broken.kind == "register_backends"
    assert "not async" in broken.error


def test_duplicate_backend_across_distributions(site: FakeSite) -> None:
    site.add("fake-beta", {"fakebeta": registering("shared", "own")}, version="2.0")
    site.add("fake-alpha", {"fakealpha": registering("shared")}, version="1.0")

    registry = Registry.from_entry_points(only("fakealpha", "fakebeta"))

    # Loading follows distribution names, not creation or sys.path order: alpha wins.
    assert [(b.name, b.distribution) for b in registry.backends()] == [
        ("own", "fake-beta"),
        ("shared", "fake-alpha"),
    ]
    [broken] = registry.broken()
    assert (broken.plugin, broken.distribution, broken.kind) == (
        "fakebeta",
        "fake-beta",
        "duplicate",
    )
    assert broken.error.startswith("DuplicateBackendError: backend 'shared'")
    assert "fake-beta 2.0" in broken.error
    assert "fake-alpha 1.0" in broken.error
    # The conflict is not the plugin's bug: it stays registered with its other backend.
    assert [name for name, _ in registry.plugins()] == ["fakealpha", "fakebeta"]


def test_add_backend_with_a_taken_name_raises() -> None:
    registry = Registry.empty()
    registry.add_backend(FakeBackend("x"), distribution="first-dist", version="1")

    with pytest.raises(DuplicateBackendError, match=r"second-dist 2.*first-dist 1"):
        registry.add_backend(FakeBackend("x"), distribution="second-dist", version="2")
    assert registry.backends()[0].distribution == "first-dist"


def test_add_backend_rejects_what_is_not_a_backend() -> None:
    registry = Registry.empty()
    not_a_backend: Backend = attrs.evolve(FakeBackend("x"), capabilities="fast")  # type: ignore[arg-type]  # deliberately wrong

    with pytest.raises(PluginError, match="capabilities is 'fast'"):
        registry.add_backend(not_a_backend)
    assert registry.backends() == []


def test_runtime_backend_defaults() -> None:
    registry = Registry.empty()
    registry.add_backend(FakeBackend("x"))

    [info] = registry.backends()
    assert (info.distribution, info.version, info.plugin) == ("<runtime>", "", "<runtime>")


def test_unknown_backend_lists_installed_and_suggests_close_match() -> None:
    registry = Registry.empty()
    registry.add_backend(FakeBackend("process"))
    registry.add_backend(FakeBackend("coroutine"))

    message = (
        "unknown backend 'proces': installed backends are coroutine, process "
        "(did you mean 'process'?)"
    )
    with pytest.raises(UnknownBackendError) as info:
        registry.backend("proces")
    assert str(info.value) == message
    with pytest.raises(UnknownBackendError, match=r"coroutine, process$"):
        registry.backend("zzz")


@pytest.mark.parametrize(
    ("source", "where"),
    [
        (
            "pyproject.toml [tool.executors] (/srv/app/pyproject.toml)",
            "(backend = 'proces' from pyproject.toml [tool.executors] (/srv/app/pyproject.toml))",
        ),
        (
            "executors.toml (/srv/app/executors.toml)",
            "(backend = 'proces' from executors.toml (/srv/app/executors.toml))",
        ),
        ("env EXECUTORS_BACKEND", "(backend = 'proces' from env EXECUTORS_BACKEND)"),
        (
            "--backend on the command line",
            "(backend = 'proces' from --backend on the command line)",
        ),
        ("override", "(backend = 'proces' from override)"),
        (
            "default",
            "(backend = 'proces' by default; set backend in pyproject.toml [tool.executors], "
            "executors.toml or EXECUTORS_BACKEND to choose another)",
        ),
    ],
)
def test_unknown_backend_names_where_its_name_came_from(source: str, where: str) -> None:
    registry = Registry.empty()
    registry.add_backend(FakeBackend("process"))

    with pytest.raises(UnknownBackendError) as info:
        registry.backend("proces", source=source)

    assert str(info.value) == (
        f"unknown backend 'proces' {where}: installed backends are process "
        "(did you mean 'process'?)"
    )


def test_unavailable_backend_names_where_its_name_came_from(site: FakeSite) -> None:
    site.add("fake-b", {"fakeb": registering("fakeb")})
    registry = Registry.from_entry_points({**only("fakeb"), "EXECUTORS_BLOCK_PLUGINS": "fakeb"})

    with pytest.raises(UnknownBackendError) as info:
        registry.backend("fakeb", source="env EXECUTORS_BACKEND")

    assert str(info.value) == (
        "backend 'fakeb' (backend = 'fakeb' from env EXECUTORS_BACKEND) is unavailable: "
        "plugin 'fakeb' from fake-b 1.0 is not loaded: EXECUTORS_BLOCK_PLUGINS names it"
    )


def test_unknown_backend_when_none_is_installed() -> None:
    with pytest.raises(UnknownBackendError, match=r"no backend is installed.*pip install"):
        Registry.empty().backend("process")


def test_unknown_backend_named_after_a_broken_plugin_reports_its_error(site: FakeSite) -> None:
    site.add(
        "executors-thread",
        {"fakethread": "import missing_dependency_xyz\n"},
        entry_points={"thread": "fakethread"},
        version="0.1.0",
    )
    site.add("fake-proc", {"fakeproc": registering("process")})

    registry = Registry.from_entry_points(only("thread", "fakeproc"))

    with pytest.raises(UnknownBackendError) as info:
        registry.backend("thread")
    assert str(info.value).startswith(
        "backend 'thread' is unavailable: plugin 'thread' from executors-thread 0.1.0 "
        "failed to import: ModuleNotFoundError: No module named 'missing_dependency_xyz'"
    )
    # Other unknown names mention the broken plugin too: it may have held the backend.
    with pytest.raises(UnknownBackendError, match=r"failed to load: thread"):
        registry.backend("other")


def test_unknown_backend_named_after_a_blocked_plugin_says_so(site: FakeSite) -> None:
    site.add("fake-thread", {"thread": registering("thread")})

    registry = Registry.from_entry_points({**only("thread"), "EXECUTORS_BLOCK_PLUGINS": "thread"})

    with pytest.raises(UnknownBackendError, match=r"is not loaded: EXECUTORS_BLOCK_PLUGINS"):
        registry.backend("thread")


def test_disable_autoload_loads_no_entry_point(site: FakeSite) -> None:
    site.add("fake-a", {"fakea": registering("a")})

    registry = Registry.from_entry_points({"EXECUTORS_DISABLE_PLUGIN_AUTOLOAD": "1"})

    assert registry.backends() == []
    assert registry.plugins() == []
    assert registry.broken() == []
    [blocked] = [b for b in registry.blocked() if b.plugin == "fakea"]
    assert (blocked.distribution, blocked.version) == ("fake-a", "1.0")
    assert "EXECUTORS_DISABLE_PLUGIN_AUTOLOAD" in blocked.reason
    # It was never imported.
    assert "fakea" not in sys.modules


def test_autoload_loads_every_entry_point(site: FakeSite) -> None:
    site.add("fake-a", {"fakea": registering("a")})

    registry = Registry.from_entry_points({})

    assert "a" in [b.name for b in registry.backends()]
    assert "fakea" in [name for name, _ in registry.plugins()]


def test_plugins_variable_selects_by_entry_point_or_distribution_name(site: FakeSite) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    site.add("Fake_B", {"fakeb": registering("b")})
    site.add("fake-c", {"fakec": registering("c")})

    registry = Registry.from_entry_points(only(" fakea", "fake-b "))

    assert [b.name for b in registry.backends()] == ["a", "b"]
    assert "fakec" in [b.plugin for b in registry.blocked()]


def test_plugins_variable_warns_about_names_matching_nothing(
    site: FakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    site.add("fake-a", {"fakea": registering("a")})

    with caplog.at_level(logging.WARNING, logger="executors.plugins"):
        Registry.from_entry_points(only("fakea", "fake-a", "typo"))

    assert [r.getMessage() for r in caplog.records] == [
        "EXECUTORS_PLUGINS names 'typo', but no installed plugin has that name"
    ]


@pytest.mark.parametrize("block", ["fakeb", "fake-b", "FAKE_B"])
def test_block_plugins_by_entry_point_or_distribution_name(site: FakeSite, block: str) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    site.add("fake-b", {"fakeb": registering("b")})

    # Blocking wins over EXECUTORS_PLUGINS naming the same plugin, and over autoload.
    for env in [{**only("fakea", "fakeb")}, {}]:
        registry = Registry.from_entry_points({**env, "EXECUTORS_BLOCK_PLUGINS": f"x,{block}"})
        names = [b.name for b in registry.backends()]
        assert "a" in names
        assert "b" not in names
        # Blocked is not broken. (Only the fakes: autoload also loads the real plugins.)
        assert not {"fakea", "fakeb"} & {broken.plugin for broken in registry.broken()}
        [blocked] = [b for b in registry.blocked() if b.plugin == "fakeb"]
        assert blocked.reason == "EXECUTORS_BLOCK_PLUGINS names it"
    assert "fakeb" not in sys.modules


def test_same_distribution_twice_on_sys_path_loads_once(
    site: FakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    copy = FakeSite(tmp_path / "copy")
    copy.path.mkdir()
    copy.add("fake-a", {"fakea": registering("a")})
    monkeypatch.syspath_prepend(copy.path)

    registry = Registry.from_entry_points(only("fakea"))

    assert [b.name for b in registry.backends()] == ["a"]
    assert registry.broken() == []


def test_plugins_are_returned_in_registration_order(site: FakeSite) -> None:
    site.add("fake-b", {"fakeb": registering("b")})
    site.add("fake-a", {"fakea": registering("a")})
    registry = Registry.from_entry_points(only("fakeb", "fakea"))
    first, second = Observer(), RuntimePlugin(FakeBackend("runtime"))

    registry.register_plugin(first, "first")
    registry.register_plugin(second, "second", distribution="my-app", version="3")

    names = [name for name, _ in registry.plugins()]
    assert names == ["fakea", "fakeb", "first", "second"]
    assert [plugin for _, plugin in registry.plugins()][2:] == [first, second]
    assert sys.modules["fakea"] is registry.plugins()[0][1]
    runtime = registry.backends()[-1]
    assert (runtime.name, runtime.distribution, runtime.version, runtime.plugin) == (
        "runtime",
        "my-app",
        "3",
        "second",
    )


def test_plugin_infos_list_hooks() -> None:
    registry = Registry.empty()
    registry.register_plugin(RuntimePlugin(), "backends", distribution="d", version="1")
    registry.register_plugin(Observer(), "observer")

    assert [(p.name, p.distribution, p.version, p.hooks) for p in registry.plugin_infos()] == [
        ("backends", "d", "1", ("executors_register_backends",)),
        ("observer", "<runtime>", "", ("executors_executor_ready",)),
    ]


def test_register_plugin_isolates_a_failing_runtime_plugin() -> None:
    registry = Registry.empty()

    registry.register_plugin(RuntimePlugin("not a backend"), "bad")
    registry.register_plugin(RuntimePlugin(FakeBackend("ok")), "good")

    assert [b.name for b in registry.backends()] == ["ok"]
    [broken] = registry.broken()
    assert (broken.plugin, broken.distribution, broken.kind) == (
        "bad",
        "<runtime>",
        "register_backends",
    )


def test_plugin_name_taken_twice_is_a_duplicate() -> None:
    registry = Registry.empty()
    registry.register_plugin(Observer(), "same", distribution="first-dist", version="1")

    registry.register_plugin(Observer(), "same", distribution="second-dist")

    [broken] = registry.broken()
    assert (broken.distribution, broken.kind) == ("second-dist", "duplicate")
    assert "already registered (as 'same' from first-dist 1)" in broken.error
    assert len(registry.plugins()) == 1


class TypoPlugin:
    @hookimpl
    def executors_job_finishd(self) -> None:
        pass


class NothingLikeAHookPlugin:
    @hookimpl
    def executors_frobnicate_the_widgets(self) -> None:
        pass


class WrongArgumentPlugin:
    @hookimpl
    def executors_register_backends(self, registr: object) -> None:
        pass


@pytest.mark.parametrize(
    ("plugin", "error"),
    [(TypoPlugin(), "unknown hook 'executors_job_finishd'"), (WrongArgumentPlugin(), "registr")],
)
def test_invalid_hook_implementations_are_reported(plugin: object, error: str) -> None:
    registry = Registry.empty()

    registry.register_plugin(plugin, "invalid")

    [broken] = registry.broken()
    assert broken.kind == "validate"
    assert error in broken.error
    assert registry.plugins() == []


def test_an_unknown_hook_is_reported_with_the_closest_known_one() -> None:
    registry = Registry.empty()

    registry.register_plugin(TypoPlugin(), "typo")

    [broken] = registry.broken()
    assert (
        "unknown hook 'executors_job_finishd': no executors hook has that name "
        "(did you mean 'executors_job_finished'?)"
    ) in broken.error


def test_an_unknown_hook_like_no_other_is_reported_with_every_known_one() -> None:
    registry = Registry.empty()

    registry.register_plugin(NothingLikeAHookPlugin(), "odd")

    [broken] = registry.broken()
    assert "did you mean" not in broken.error
    assert (
        "unknown hook 'executors_frobnicate_the_widgets': no executors hook has that name; "
        "the hooks are executors_"
    ) in broken.error
    assert "executors_register_backends" in broken.error


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("executors_job_finishd", "executors_job_finished"),
        ("executors_register_backend", "executors_register_backends"),
        ("register_backends", "executors_register_backends"),  # the prefix left out
        ("executors_job_finished", "executors_job_finished"),
        ("executors_frobnicate_the_widgets", None),
        ("executors_", None),  # the shared prefix alone is close to nothing
    ],
)
def test_closest_hook(name: str, closest: str | None) -> None:
    assert closest_hook(name) == closest


NO_HOOKS = """
from executors._hookspecs import hookimpl

def executors_register_backends(register):  # the marker forgotten
    raise AssertionError("never called")

def helper():
    pass
"""


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            NO_HOOKS,
            "PluginError: executors_register_backends is not marked with "
            "@executors.hookimpl, so it would never be called: decorate it with "
            "@executors.hookimpl",
        ),
        (
            "def register(registry):\n    pass\n",
            "PluginError: it has no function marked with @executors.hookimpl: implement "
            "executors_register_backends (to register a backend) or an observer hook, "
            "marked with @executors.hookimpl, or remove its entry point 'fakeempty' from "
            "the group 'executors'",
        ),
    ],
    ids=["unmarked", "nothing"],
)
def test_an_entry_point_that_implements_no_hook_is_reported_and_others_load(
    site: FakeSite, caplog: pytest.LogCaptureFixture, source: str, error: str
) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    site.add("fake-empty", {"fakeempty": source}, version="0.2")

    with caplog.at_level(logging.WARNING, logger="executors.plugins"):
        registry = Registry.from_entry_points(only("fakea", "fakeempty"))

    [broken] = registry.broken()
    assert (broken.plugin, broken.distribution, broken.version, broken.kind) == (
        "fakeempty",
        "fake-empty",
        "0.2",
        "no_hooks",
    )
    assert broken.error == error
    assert broken.summary == (
        f"plugin 'fakeempty' from fake-empty 0.2 implements no executors hook: {error}"
    )
    assert [record.getMessage() for record in caplog.records] == [broken.summary]
    # It is not registered: a plugin that does nothing is not listed as one that works.
    assert [name for name, _ in registry.plugins()] == ["fakea"]
    assert [b.name for b in registry.backends()] == ["a"]
    # Asked for by its name, the backend it was meant to register says why it is not there.
    with pytest.raises(UnknownBackendError, match=r"'fakeempty' is unavailable: .* no executors"):
        registry.backend("fakeempty")


class Inert:
    """A runtime plugin with several hook-like methods and no marker."""

    def executors_job_started(self) -> None:
        pass

    def executors_job_finished(self) -> None:
        pass


def test_a_runtime_plugin_that_implements_no_hook_is_reported() -> None:
    registry = Registry.empty()

    registry.register_plugin(Inert(), "inert")

    [broken] = registry.broken()
    assert broken.kind == "no_hooks"
    assert broken.error == (
        "PluginError: executors_job_finished, executors_job_started are not marked with "
        "@executors.hookimpl, so they would never be called: decorate each with "
        "@executors.hookimpl"
    )
    assert registry.plugins() == []


def test_each_broken_plugin_is_logged_once(
    site: FakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    site.add("fake-bad", {"fakebad": "import missing_dependency_xyz\n"})
    site.add("fake-a", {"fakea": registering("a")})

    with caplog.at_level(logging.WARNING, logger="executors.plugins"):
        registry = Registry.from_entry_points(only("fakebad", "fakea"))
        with pytest.raises(UnknownBackendError):
            registry.backend("fakebad")

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == registry.broken()[0].summary


@pytest.fixture
def fresh_default_registry() -> Iterator[None]:
    reset_default_registry()
    yield
    reset_default_registry()


@pytest.mark.usefixtures("fresh_default_registry")
def test_default_registry_reads_os_environ_once(
    site: FakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add("fake-a", {"fakea": registering("a")})
    monkeypatch.setenv("EXECUTORS_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("EXECUTORS_PLUGINS", "fakea")

    registry = default_registry()
    monkeypatch.setenv("EXECUTORS_PLUGINS", "")

    assert default_registry() is registry
    assert [b.name for b in registry.backends()] == ["a"]
    reset_default_registry()
    assert default_registry().backends() == []
