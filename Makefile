# The two commands of the README. Each creates .venv on first use (a few minutes: torch is large)
# and reuses it afterwards; it is reinstalled when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.cnnlab-installed

.PHONY: demo test test-fast lint clean-runs installed

demo: installed
	$(VENV)/bin/cnnlab quickstart

# The whole suite, slow tests included, after the lint: imports follow the data flow
# (import-linter contracts in pyproject.toml) and ruff finds nothing.
test: lint
	$(VENV)/bin/python -m pytest

# Everything but the tests marked slow.
test-fast: lint
	$(VENV)/bin/python -m pytest -m "not slow"

lint: installed
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,reference]'
	touch $(STAMP)

# A venv shared between checkouts (CI links a cached one) points its editable install at the
# last checkout installed; point it back at this one (no dependencies: a few seconds).
installed: $(STAMP)
	@$(VENV)/bin/python -c "import cnnlab, sys; sys.exit(not cnnlab.__file__.startswith('$(CURDIR)/src/'))" 2>/dev/null \
	  || $(VENV)/bin/python -m pip install --quiet --no-deps -e .

clean-runs:
	rm -rf runs
