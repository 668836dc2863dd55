# Dream Explorer: `make run` opens the app, `make test` runs the suite; both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench figures assets from-nothing clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,ray]"
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/dream-explorer $(ARGS)

test: install
	bash scripts/run_tests.sh

lint: install
	$(VENV)/bin/ruff check core explorer scripts tests
	$(VENV)/bin/ruff format --check core explorer scripts tests
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/dream-explorer bench

figures: install
	bash scripts/figures.sh $(ARGS)

assets: install
	bash scripts/build_assets.sh

from-nothing: install
	bash scripts/from_nothing.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
