# Every target creates the virtualenv it needs, so a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_FLAGS ?=
# pytest-xdist processes: the tests are isolated (own warehouse, sandbox port, Dagster home)
WORKERS ?= 2

.PHONY: venv demo test test-slow ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## make demo: sandbox with a seeded practice -> connect -> initial, hourly, nightly, export as Dagster runs -> report
demo: $(STAMP)
	$(BIN)/xpm-pipeline demo

## make test: the whole suite except the marked slow suites (Postgres tests run when XPM_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not serial" -n $(WORKERS) $(PYTEST_FLAGS)
	$(BIN)/python -m pytest -q -m "not slow and serial" $(PYTEST_FLAGS) || [ $$? -eq 5 ]

## make test-slow: the slow suites (large sandbox, kill tests, stress); .ci/run adds these
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow and not serial" -n $(WORKERS) $(PYTEST_FLAGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -q -m "slow and serial" $(PYTEST_FLAGS) || [ $$? -eq 5 ]

## make ui: the XPM sandbox plus a local Dagster UI on this code location
ui: $(STAMP)
	$(BIN)/xpm-pipeline ui

## make bench: the benchmark scripts (installs the peer libraries they compare against)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/parse_bench.py
	$(BIN)/python benchmarks/compare_bench.py
	XPM_TEST_POSTGRES_URL=$${XPM_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test} $(BIN)/python benchmarks/load_bench.py

clean:
	rm -rf $(VENV) .xpm .pytest_cache
