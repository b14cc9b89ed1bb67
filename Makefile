# The two commands of the README. Each creates .venv on first use (a few minutes: torch is large)
# and reuses it afterwards; it is reinstalled when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.cnnlab-installed

.PHONY: demo test test-fast clean-runs

demo: $(STAMP)
	$(VENV)/bin/cnnlab quickstart

# The whole suite, slow tests included (337 tests, about 3 minutes on 2 cores).
test: $(STAMP)
	$(VENV)/bin/python -m pytest

# Everything but the tests marked slow.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,reference]'
	touch $(STAMP)

clean-runs:
	rm -rf runs
