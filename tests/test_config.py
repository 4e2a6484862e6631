"""Layered configuration: precedence, provenance, and the messages of every bad input."""

from __future__ import annotations

import json
import math
import re
import textwrap
import tomllib
from pathlib import Path

import attrs
import pytest

from executors._config import (
    RESERVED_ENV_VARS,
    ConfigRow,
    LoadedConfig,
    PoolConfig,
    build_backend_options,
    load_config,
)
from executors._exceptions import ConfigError, ConfigWarning

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
FIELDS = [a.name for a in attrs.fields(PoolConfig) if a.name != "backend_options"]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path.resolve()


def load(
    directory: Path, overrides: dict[str, object] | None = None, /, **environ: str
) -> LoadedConfig:
    """load_config isolated from the real environment: only ``environ`` is seen."""
    return load_config(overrides, directory=directory, environ=environ)


def fails(*parts: str) -> str:
    """A ``match`` pattern requiring every part, literally and in order."""
    return ".*".join(map(re.escape, parts))


def job_function() -> None:
    """A callable passed as an entrypoint override."""


# ---------------------------------------------------------------------------------------
# Layers, precedence and provenance.


def test_defaults_when_nothing_is_configured(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.config == PoolConfig()
    assert set(loaded.provenance) == {*FIELDS, "backend_options"}
    assert set(loaded.provenance.values()) == {"default"}


def test_each_layer_overrides_the_ones_below_key_by_key(tmp_path: Path) -> None:
    pyproject = write(
        tmp_path,
        "pyproject.toml",
        """
        [tool.executors]
        max_executors = 8
        idle_executors = 2
        job_timeout = 10
        drain_timeout = 1
        """,
    )
    executors_toml = write(
        tmp_path,
        "executors.toml",
        """
        idle_executors = 3
        job_timeout = 20
        drain_timeout = 2
        """,
    )
    environ = {"EXECUTORS_JOB_TIMEOUT": "30", "EXECUTORS_DRAIN_TIMEOUT": "3"}
    loaded = load(tmp_path, {"drain_timeout": 4}, **environ)

    got = {key: (getattr(loaded.config, key), loaded.source(key)) for key in FIELDS}
    assert got["max_executors"] == (8, f"pyproject.toml [tool.executors] ({pyproject})")
    assert got["idle_executors"] == (3, f"executors.toml ({executors_toml})")
    assert got["job_timeout"] == (30.0, "env EXECUTORS_JOB_TIMEOUT")
    assert got["drain_timeout"] == (4.0, "override")
    assert got["close_timeout"] == (10.0, "default")


def test_directory_defaults_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "executors.toml", "idle_executors = 0\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).config.idle_executors == 0


def test_pyproject_without_an_executors_table_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n[tool.other]\nx = 1\n')
    assert load(tmp_path).config == PoolConfig()


def test_executors_config_names_the_file_read_instead_of_executors_toml(tmp_path: Path) -> None:
    write(tmp_path, "executors.toml", "idle_executors = 0\n")
    (tmp_path / "conf").mkdir()
    named = write(tmp_path / "conf", "prod.toml", "max_pending = 7\n")

    for value in ("conf/prod.toml", str(named)):  # relative to `directory`, or absolute
        loaded = load(tmp_path, EXECUTORS_CONFIG=value)
        assert (loaded.config.max_pending, loaded.config.idle_executors) == (7, 1)
        assert loaded.source("max_pending") == f"prod.toml ({named})"


def test_a_missing_executors_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path.resolve() / "nope.toml"
    with pytest.raises(ConfigError, match=fails("EXECUTORS_CONFIG", "'nope.toml'", str(missing))):
        load(tmp_path, EXECUTORS_CONFIG="nope.toml")


@pytest.mark.parametrize("name", ["pyproject.toml", "executors.toml"])
def test_invalid_toml_names_the_file_and_the_parser_message(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "[tool.executors]\nidle_executors = = 3\n")
    with pytest.raises(ConfigError, match=fails(f"{name} ({path}): invalid TOML", "line 2")):
        load(tmp_path)


def test_tool_executors_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", "[tool]\nexecutors = 3\n")
    with pytest.raises(ConfigError, match=fails(str(path), "tool.executors = 3", "a table")):
        load(tmp_path)


def test_rows_list_every_field_in_order_then_the_backend_options(tmp_path: Path) -> None:
    write(tmp_path, "executors.toml", 'backend = "coroutine"\n[coroutine]\nlag = 0.5\nname = "x"\n')
    rows = load(tmp_path, {"idle_executors": 0}).rows()
    assert [row.key for row in rows] == [*FIELDS, "coroutine.lag", "coroutine.name"]
    assert rows[FIELDS.index("idle_executors")] == ConfigRow("idle_executors", 0, "override")
    assert rows[-1].value == "x"


def test_provenance_is_read_only_and_source_rejects_unknown_keys(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    with pytest.raises(TypeError):
        loaded.provenance["backend"] = "mine"  # type: ignore[index]  # the point of the test
    with pytest.raises(KeyError):
        loaded.source("nothing")


# ---------------------------------------------------------------------------------------
# Bad values in files: every message names file, key, value and what is allowed.


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('idle_executors = "4"', "idle_executors = '4' is invalid: expected an integer >= 0"),
        ("idle_executors = true", "idle_executors = True is invalid: expected an integer >= 0"),
        ("idle_executors = -1", "idle_executors = -1 is invalid: must be >= 0"),
        ("max_executors = 2.5", "max_executors = 2.5 is invalid: expected an integer >= 1"),
        ("max_pending = 2.0", "max_pending = 2.0 is invalid: expected an integer >= 0"),
        ("job_timeout = 0", "job_timeout = 0.0 is invalid: must be > 0"),
        ("job_timeout = nan", "job_timeout = nan is invalid: expected a number > 0"),
        ("close_timeout = inf", "close_timeout = inf is invalid: expected a number > 0"),
        ('when_full = "drop"', "when_full = 'drop' is invalid: expected 'wait' or 'reject'"),
        ('entrypoint = "jobs"', "entrypoint = 'jobs' is invalid: expected 'module:function'"),
        ("entrypoint = 3", "entrypoint = 3 is invalid: expected a 'module:function' string"),
        ('backend = ""', "backend = '' is invalid: must be a backend name"),
        ("idle_executor = 4", "idle_executor = 4 is invalid: unknown key; did you mean"),
        ("colour = 1", "colour = 1 is invalid: unknown key; valid keys are acquire_attempts"),
        ("backend_options = 1", "backend_options = 1 is invalid: put backend options in"),
        ("[tool.executors]\nidle_executors = 0", "tool = {'executors': {'idle_executors': 0}}"),
    ],
)
def test_bad_values_in_executors_toml(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "executors.toml", line + "\n")
    with pytest.raises(ConfigError, match=fails(f"executors.toml ({path}): {message}")):
        load(tmp_path)


def test_misspelt_key_in_pyproject_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", "[tool.executors]\nidle_executor = 4\n")
    expected = f"pyproject.toml [tool.executors] ({path}): idle_executor = 4 is invalid: "
    with pytest.raises(ConfigError, match=fails(expected, "did you mean 'idle_executors'?")):
        load(tmp_path)


def test_a_backend_options_table_is_pointed_at_the_backend_table(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.executors.backend_options]\nx = 1\n")
    with pytest.raises(ConfigError, match=fails("such as [tool.executors.process]")):
        load(tmp_path)


def test_a_bad_value_is_reported_even_when_a_higher_source_overrides_it(tmp_path: Path) -> None:
    # A broken file must not work or fail depending on the environment it runs in.
    write(tmp_path, "executors.toml", "idle_executors = -1\n")
    with pytest.raises(ConfigError, match=fails("executors.toml")):
        load(tmp_path, EXECUTORS_IDLE_EXECUTORS="2")


def test_ints_are_accepted_for_float_fields(tmp_path: Path) -> None:
    write(tmp_path, "executors.toml", "initialize_timeout = 5\nmemory_limit_mb = 512\n")
    config = load(tmp_path).config
    assert isinstance(config.initialize_timeout, float)
    assert (config.initialize_timeout, config.memory_limit_mb) == (5.0, 512.0)


# ---------------------------------------------------------------------------------------
# Cross-field rules name where both values came from.


def test_idle_above_max_names_both_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "executors.toml", "idle_executors = 5\n")
    expected = (
        f"executors.toml ({path}): idle_executors = 5 is invalid: "
        "must be <= max_executors (2, from env EXECUTORS_MAX_EXECUTORS)"
    )
    with pytest.raises(ConfigError, match=fails(expected)):
        load(tmp_path, EXECUTORS_MAX_EXECUTORS="2")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"spawn_backoff": 5, "spawn_backoff_max": 1},
            "override: spawn_backoff_max = 1.0 is invalid: must be >= spawn_backoff (5.0, from",
        ),
        (
            {"memory_warn_mb": 900, "memory_limit_mb": 500},
            "override: memory_warn_mb = 900.0 is invalid: must be <= memory_limit_mb (500.0",
        ),
        (
            {"idle_executors": 4, "max_executors": 2},
            "override: idle_executors = 4 is invalid: must be <= max_executors (2, from override",
        ),
    ],
)
def test_cross_field_rules(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=fails(message)):
        load(tmp_path, overrides)


def test_cross_field_rule_against_a_default(tmp_path: Path) -> None:
    # The value the user set is blamed, not the default it collides with.
    expected = (
        "env EXECUTORS_SPAWN_BACKOFF: spawn_backoff = 11.0 is invalid: "
        "must be <= spawn_backoff_max (10.0, from default)"
    )
    with pytest.raises(ConfigError, match=fails(expected)):
        load(tmp_path, EXECUTORS_SPAWN_BACKOFF="11")


# ---------------------------------------------------------------------------------------
# Environment variables.


@pytest.mark.parametrize(
    ("name", "text", "field", "value"),
    [
        ("EXECUTORS_IDLE_EXECUTORS", "0", "idle_executors", 0),
        ("EXECUTORS_MAX_EXECUTORS", " 6 ", "max_executors", 6),
        ("EXECUTORS_JOB_TIMEOUT", "2.5", "job_timeout", 2.5),
        ("EXECUTORS_JOB_TIMEOUT", "none", "job_timeout", None),
        ("EXECUTORS_MAX_PENDING", "", "max_pending", None),
        ("EXECUTORS_MAX_JOBS_PER_EXECUTOR", "None", "max_jobs_per_executor", None),
        ("EXECUTORS_MEMORY_LIMIT_MB", "512", "memory_limit_mb", 512.0),
        ("EXECUTORS_WHEN_FULL", "reject", "when_full", "reject"),
        ("EXECUTORS_ENTRYPOINT", "app.jobs:run", "entrypoint", "app.jobs:run"),
        ("EXECUTORS_SETUP", "none", "setup", None),
        ("EXECUTORS_BACKEND", "process", "backend", "process"),
    ],
)
def test_env_text_is_converted_by_the_field_type(
    tmp_path: Path, name: str, text: str, field: str, value: object
) -> None:
    loaded = load(tmp_path, **{name: text})
    assert getattr(loaded.config, field) == value
    assert loaded.source(field) == f"env {name}"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("EXECUTORS_IDLE_EXECUTORS", "four", "idle_executors = 'four' is invalid: expected an"),
        ("EXECUTORS_IDLE_EXECUTORS", "none", "idle_executors = 'none' is invalid: expected an"),
        ("EXECUTORS_MAX_EXECUTORS", "4.0", "max_executors = '4.0' is invalid: expected an"),
        ("EXECUTORS_IDLE_EXECUTORS", "-1", "idle_executors = -1 is invalid: must be >= 0"),
        ("EXECUTORS_JOB_TIMEOUT", "soon", 'expected a number > 0, or "none"'),
        ("EXECUTORS_PING_TIMEOUT", "inf", "ping_timeout = 'inf' is invalid: expected a number"),
        ("EXECUTORS_WHEN_FULL", "drop", "when_full = 'drop' is invalid: expected 'wait' or"),
        ("EXECUTORS_BACKEND_OPTIONS", "{}", "EXECUTORS_<BACKEND>__<OPTION>"),
    ],
)
def test_bad_env_values_name_the_variable(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=fails(f"env {name}: ", message)):
        load(tmp_path, **{name: text})


def test_misspelt_env_variable_warns_and_suggests_the_right_one(tmp_path: Path) -> None:
    expected = "env EXECUTORS_IDLE_EXECUTOR: idle_executor = '4' is ignored: unknown variable"
    with pytest.warns(ConfigWarning, match=fails(expected, "'EXECUTORS_IDLE_EXECUTORS'?")):
        loaded = load(tmp_path, EXECUTORS_IDLE_EXECUTOR="4")
    assert loaded.config == PoolConfig()


def test_unknown_env_variable_without_a_near_name_explains_the_scheme(tmp_path: Path) -> None:
    with pytest.warns(ConfigWarning, match=fails("EXECUTORS_ZZZ", "EXECUTORS_<OPTION>")):
        load(tmp_path, EXECUTORS_ZZZ="1")


def test_another_programs_variable_does_not_stop_a_pool(tmp_path: Path) -> None:
    # EXECUTORS_HOME belongs to no setting: the settings around it still load.
    with pytest.warns(ConfigWarning, match="EXECUTORS_HOME: home = '/opt' is ignored"):
        loaded = load(tmp_path, EXECUTORS_HOME="/opt", EXECUTORS_IDLE_EXECUTORS="2")
    assert loaded.config.idle_executors == 2


def test_reserved_and_foreign_variables_are_ignored(tmp_path: Path) -> None:
    environ = dict.fromkeys(RESERVED_ENV_VARS - {"EXECUTORS_CONFIG"}, "x")
    environ |= {"PATH": "/bin", "executors_lowercase": "1", "MY_EXECUTORS_X": "1"}
    assert load(tmp_path, **environ).config == PoolConfig()


# ---------------------------------------------------------------------------------------
# Overrides (open_pool keywords; the CLI's --set passes text).


def test_override_text_is_parsed_like_env(tmp_path: Path) -> None:
    overrides: dict[str, object] = {"idle_executors": "0", "job_timeout": "none", "setup": ""}
    config = load(tmp_path, overrides).config
    assert (config.idle_executors, config.job_timeout, config.setup) == (0, None, None)


def test_override_values_are_taken_as_given_and_type_checked(tmp_path: Path) -> None:
    overrides: dict[str, object] = {"entrypoint": job_function, "ping_interval": 1}
    config = load(tmp_path, overrides).config
    assert config.entrypoint is job_function
    assert config.ping_interval == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"idle_executors": True}, "override: idle_executors = True is invalid: expected an"),
        ({"max_executors": 2.5}, "override: max_executors = 2.5 is invalid: expected an"),
        ({"idle_executors": None}, "override: idle_executors = None is invalid: expected an"),
        ({"entrypoint": 3}, "override: entrypoint = 3 is invalid: expected a 'module:function'"),
        ({"idle_executor": 1}, "override: idle_executor = 1 is invalid: unknown key; did you"),
        ({"backend_options": 3}, "override: backend_options = 3 is invalid: expected a mapping"),
        ({".lag": 3}, "override: .lag = 3 is invalid: unknown key"),
    ],
)
def test_bad_overrides(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=fails(message)):
        load(tmp_path, overrides)


# ---------------------------------------------------------------------------------------
# Backend option tables.

BACKEND_TABLES = """
    [tool.executors]
    backend = "coroutine"
    [tool.executors.coroutine]
    lag = 0.5
    name = "from-pyproject"
    [tool.executors.process]
    start_method = "spawn"
    junk = [1, 2]
"""


def test_only_the_selected_backend_table_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", BACKEND_TABLES)
    loaded = load(tmp_path)
    assert loaded.config.backend_options == {"lag": 0.5, "name": "from-pyproject"}
    table = f"pyproject.toml [tool.executors.coroutine] ({path})"
    assert loaded.source("coroutine.lag") == table
    assert loaded.source("backend_options") == table
    assert "process.start_method" not in loaded.provenance


def test_selecting_another_backend_selects_its_table(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", BACKEND_TABLES)
    loaded = load(tmp_path, EXECUTORS_BACKEND="process")
    assert loaded.config.backend_options == {"start_method": "spawn", "junk": [1, 2]}


def test_backend_options_from_every_layer(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", BACKEND_TABLES)
    toml = write(tmp_path, "executors.toml", '[coroutine]\nname = "from-file"\ndepth = 1\n')
    environ = {"EXECUTORS_COROUTINE__DEPTH": "2", "EXECUTORS_PROCESS__START_METHOD": "fork"}
    loaded = load(tmp_path, {"coroutine.lag": "0.25"}, **environ)

    assert loaded.config.backend_options == {"lag": "0.25", "name": "from-file", "depth": "2"}
    assert loaded.source("coroutine.name") == f"executors.toml [coroutine] ({toml})"
    assert loaded.source("coroutine.depth") == "env EXECUTORS_COROUTINE__DEPTH"
    assert loaded.source("coroutine.lag") == "override"


def test_backend_options_override_applies_to_the_final_backend(tmp_path: Path) -> None:
    overrides: dict[str, object] = {"backend": "thread", "backend_options": {"stack_kb": 512}}
    loaded = load(tmp_path, overrides)
    assert loaded.config.backend_options == {"stack_kb": 512}
    assert loaded.source("thread.stack_kb") == "override"


def test_env_backend_names_are_matched_in_upper_case_with_underscores(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"backend": "remote-actor"}, EXECUTORS_REMOTE_ACTOR__HOSTS="3")
    assert loaded.config.backend_options == {"hosts": "3"}


# ---------------------------------------------------------------------------------------
# build_backend_options.


def _even(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value % 2:
        msg = f"{attr.name} = {value!r} is invalid: must be even"
        raise ConfigError(msg)


@attrs.frozen(kw_only=True)
class DemoOptions:
    workers: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    mode: str = attrs.field(default="fast", validator=attrs.validators.in_(("fast", "slow")))
    ratio: float = 0.5
    verbose: bool = False
    batch: int = attrs.field(default=2, validator=_even)
    label: str | None = None


@attrs.frozen
class NeedsToken:
    token: str


def test_builds_options_from_file_env_and_override(tmp_path: Path) -> None:
    write(tmp_path, "executors.toml", 'backend = "demo"\n[demo]\nworkers = 3\nratio = 1\n')
    environ = {"EXECUTORS_DEMO__VERBOSE": "yes", "EXECUTORS_DEMO__LABEL": "none"}
    loaded = load(tmp_path, {"demo.batch": "4", "demo.mode": "slow"}, **environ)
    options = build_backend_options(DemoOptions, loaded)
    assert options == DemoOptions(
        workers=3, mode="slow", ratio=1.0, verbose=True, batch=4, label=None
    )


def test_no_options_give_the_class_defaults(tmp_path: Path) -> None:
    assert build_backend_options(DemoOptions, load(tmp_path)) == DemoOptions()


def test_unknown_option_lists_the_valid_ones(tmp_path: Path) -> None:
    table = '[tool.executors]\nbackend = "demo"\n[tool.executors.demo]\nworker = 2\n'
    (tmp_path / "conf").mkdir()
    path = write(tmp_path, "pyproject.toml", table)
    expected = f"pyproject.toml [tool.executors.demo] ({path}): demo.worker = 2 is invalid: "
    suggestion = "did you mean 'demo.workers'? valid keys are demo.batch, demo.label, demo.mode"
    with pytest.raises(ConfigError, match=fails(expected, suggestion)):
        build_backend_options(DemoOptions, load(tmp_path))
    with pytest.raises(ConfigError, match=fails("demo.zz = 1", "valid keys are demo.batch")):
        build_backend_options(
            DemoOptions, load(tmp_path / "conf", {"backend": "demo", "demo.zz": 1})
        )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("workers = 0", "demo.workers = 0 is invalid: 'workers' must be >= 1: 0"),
        ('mode = "warp"', "demo.mode = 'warp' is invalid: 'mode' must be in ('fast', 'slow')"),
        ("batch = 3", "demo.batch = 3 is invalid: must be even"),
        ('workers = "many"', "demo.workers = 'many' is invalid: expected an integer"),
        ("workers = true", "demo.workers = True is invalid: expected an integer"),
        ("verbose = 1", "demo.verbose = 1 is invalid: expected true or false"),
    ],
)
def test_rejected_option_names_table_key_value_and_rule(
    tmp_path: Path, table: str, message: str
) -> None:
    path = write(tmp_path, "executors.toml", f'backend = "demo"\n[demo]\n{table}\n')
    with pytest.raises(ConfigError, match=fails(f"executors.toml [demo] ({path}): {message}")):
        build_backend_options(DemoOptions, load(tmp_path))


def test_rejected_env_option_names_the_variable(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"backend": "demo"}, EXECUTORS_DEMO__WORKERS="lots")
    expected = "env EXECUTORS_DEMO__WORKERS: demo.workers = 'lots' is invalid: expected an"
    with pytest.raises(ConfigError, match=fails(expected)):
        build_backend_options(DemoOptions, loaded)


def test_missing_required_option_says_where_to_set_it(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"backend": "vault"})
    with pytest.raises(ConfigError, match=fails("'token'", "EXECUTORS_VAULT__TOKEN")):
        build_backend_options(NeedsToken, loaded)


def test_options_of_a_config_built_in_code_are_reported_as_such() -> None:
    loaded = LoadedConfig.of(PoolConfig(backend="demo", backend_options={"workers": 0}))
    assert loaded.source("idle_executors") == "PoolConfig"
    assert [row.key for row in loaded.rows()] == [*FIELDS, "demo.workers"]
    with pytest.raises(ConfigError, match=fails("PoolConfig: demo.workers = 0 is invalid")):
        build_backend_options(DemoOptions, loaded)


def test_options_class_must_be_an_attrs_class(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not an attrs class"):
        build_backend_options(dict, load(tmp_path))


# ---------------------------------------------------------------------------------------
# PoolConfig on its own.


def test_pool_config_is_directly_constructible() -> None:
    config = PoolConfig(backend="coroutine", entrypoint="m:f")
    assert (config.backend, config.entrypoint, config.idle_executors) == ("coroutine", "m:f", 1)
    assert config.evolve(idle_executors=0).idle_executors == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"idle_executors": -1}, "idle_executors = -1 is invalid: must be >= 0"),
        ({"drain_timeout": math.nan}, "drain_timeout = nan is invalid: must be >= 0"),
        ({"entrypoint": "nocolon"}, "entrypoint = 'nocolon' is invalid: expected 'module:"),
        ({"when_full": "drop"}, "when_full = 'drop' is invalid: must be 'wait' or 'reject'"),
        ({"idle_executors": 3, "max_executors": 2}, "must be <= max_executors (2)"),
    ],
)
def test_pool_config_validators(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=fails(message)):
        PoolConfig(**changes)  # type: ignore[arg-type]  # deliberately wrong values


# ---------------------------------------------------------------------------------------
# The configuration reference stays complete and its examples stay loadable.


def test_every_field_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    assert documented >= set(FIELDS)


def test_every_toml_example_in_the_reference_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"^```toml\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.S | re.M)
    assert blocks
    for number, block in enumerate(blocks):
        directory = tmp_path / str(number)
        directory.mkdir()
        name = "pyproject.toml" if "tool" in tomllib.loads(block) else "executors.toml"
        write(directory, name, block)
        assert load(directory).config.entrypoint == "examples.demo:work"


# -- every bad setting at once ------------------------------------------------------------


def test_every_bad_setting_is_reported_at_once_in_the_order_of_its_sources(
    tmp_path: Path,
) -> None:
    write(tmp_path, "executors.toml", "idle_executors = -1\nmax_executor = 4\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"job_timeout": "soon"}, EXECUTORS_WHEN_FULL="later")
    lines = str(info.value).splitlines()
    assert lines[0] == "4 settings are invalid:"
    assert [line.split(": ", 1)[0].strip() for line in lines[1:]] == [
        f"executors.toml ({tmp_path / 'executors.toml'})",
        f"executors.toml ({tmp_path / 'executors.toml'})",
        "env EXECUTORS_WHEN_FULL",
        "override",
    ]
    assert "idle_executors = -1 is invalid" in lines[1]
    assert "max_executor = 4 is invalid: unknown key; did you mean 'max_executors'?" in lines[2]
    assert "when_full = 'later' is invalid" in lines[3]
    assert "job_timeout = 'soon' is invalid" in lines[4]


def test_one_bad_setting_is_reported_alone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"max_executors": 0})
    assert str(info.value).startswith("override: max_executors = 0 is invalid")


def test_relations_are_checked_once_every_setting_is_valid(tmp_path: Path) -> None:
    # max_executors is wrong on its own: no complaint that idle_executors exceeds it.
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"idle_executors": 5, "max_executors": "many"})
    assert "idle_executors" not in str(info.value)


def test_every_bad_backend_option_is_reported_at_once(tmp_path: Path) -> None:
    overrides = {"backend": "demo", "demo.workers": 0, "demo.mode": "x", "demo.zz": 1}
    with pytest.raises(ConfigError) as info:
        build_backend_options(DemoOptions, load(tmp_path, overrides))
    lines = str(info.value).splitlines()
    assert lines[0] == "3 settings are invalid:"
    assert "demo.workers = 0 is invalid" in lines[1]
    assert "demo.mode = 'x' is invalid" in lines[2]
    assert "demo.zz = 1 is invalid: unknown key" in lines[3]


@pytest.mark.parametrize(
    ("text", "value"),
    [(word, True) for word in ("true", "YES", "On", "1")]
    + [(word, False) for word in ("false", "No", "OFF", "0")],
)
def test_a_boolean_option_takes_the_documented_spellings(
    tmp_path: Path, text: str, value: bool
) -> None:
    loaded = load(tmp_path, {"backend": "demo"}, EXECUTORS_DEMO__VERBOSE=text)
    assert build_backend_options(DemoOptions, loaded).verbose is value


def test_a_boolean_option_refuses_any_other_word(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"backend": "demo"}, EXECUTORS_DEMO__VERBOSE="maybe")
    with pytest.raises(ConfigError, match=fails("demo.verbose = 'maybe' is invalid")):
        build_backend_options(DemoOptions, loaded)


def _table(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class ConvertedOptions:
    # the validator sees what the converter made of the text, never the text itself
    table: dict[str, int] = attrs.field(
        factory=dict, converter=_table, validator=attrs.validators.instance_of(dict)
    )


def test_an_option_with_a_converter_is_validated_once_converted(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"backend": "demo"}, EXECUTORS_DEMO__TABLE='{"slot": 1}')
    assert build_backend_options(ConvertedOptions, loaded).table == {"slot": 1}
    loaded = load(tmp_path, {"backend": "demo"}, EXECUTORS_DEMO__TABLE="[1]")
    with pytest.raises(ConfigError, match=fails("demo.table = '[1]'", "must be <class 'dict'>")):
        build_backend_options(ConvertedOptions, loaded)
