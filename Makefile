# Two commands do everything: `make demo` and `make test`. Both create the virtualenv
# on first use and install the core, every plugin under plugins/ and the dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
# A third-party backend laid out as a plugin author would: installed and checked too.
EXAMPLE_PLUGINS := examples/backend-plugin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-ray test-versions lint typecheck pytest format bench soak wheels docs clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(EXAMPLE_PLUGINS:%=%/pyproject.toml) Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "executors needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS) $(EXAMPLE_PLUGINS),-e $(p))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/executors run examples.demo:work --jobs 200 --setup examples.demo:load_model --set idle_executors=4 --set max_executors=8

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(foreach p,$(PLUGINS) $(EXAMPLE_PLUGINS),$(BIN)/mypy $(p)/tests &&) true

# The ray backend's tests run in a pytest process of their own: they share one local
# Ray, started for them, whose threads and processes the others' leak checks would see.
# Here its conformance suite runs the quick profile on the default path (plain actor
# calls); `test-ray` runs the ci one on both paths (compiled graphs too).
pytest: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest plugins/ray -k "not CompiledGraphsConformance"

test: lint typecheck pytest

# The ray backend's whole conformance suite (--executors-profile ci) and its tests,
# the simulated several-node cluster among them. CI runs it after `make test`.
test-ray: $(STAMP)
	$(BIN)/python -m pytest plugins/ray --executors-profile ci

# The suite on the other Pythons the project supports, each in a virtualenv of its own
# (.venv-3.12, .venv-3.13): see .ci/test_on_python. CI runs it after `make test`.
VERSIONS ?= 3.12 3.13
test-versions:
	$(foreach v,$(VERSIONS),.ci/test_on_python $(v) &&) true

# Every backend against its anchors in one run (a few minutes); writes docs/benchmarks.md,
# its plots and docs/benchmarks/results.json. Timings are noisy: read the ratios.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# 100,000 jobs per backend through one reused pool, 5% of them faults (a few minutes per
# backend): fails on a lost, duplicated or leaked outcome, anything left behind, or host
# memory growth. Not part of `test`; tests/test_soak.py runs it at a reduced scale.
SOAK_JOBS ?= 100000
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --backend coroutine --jobs $(SOAK_JOBS) --fault-rate 0.05
	$(BIN)/python benchmarks/soak.py --backend thread --jobs $(SOAK_JOBS) --fault-rate 0.05
	$(BIN)/python benchmarks/soak.py --backend process --jobs $(SOAK_JOBS) --fault-rate 0.05

# Every distribution's wheel and sdist into dist/, then a smoke run of the wheels: a
# fresh virtualenv installs them by name (the core with its backends as extras) and runs
# a job on each backend. CI runs it after the tests.
DIST := dist
wheels: $(STAMP)
	rm -rf $(DIST)
	$(foreach p,. $(PLUGINS),$(BIN)/python -m build --no-isolation --outdir $(DIST) $(p) >/dev/null &&) true
	$(PYTHON) .ci/smoke_wheels.py $(DIST)

# The docs site (mkdocs.yml: docs/*.md and an API reference from the docstrings) into
# site/, in strict mode: a broken link, anchor or reference fails it. CI builds it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-* $(DIST) site .mypy_cache .ruff_cache .hypothesis
