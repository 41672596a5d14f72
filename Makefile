# The two commands: `make run` (the main job) and `make test` (every test).
# Both install what they need into .venv first, from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench services-start services-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "noodle needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev]'   # --no-compile: modules compile on first import
	@touch $(STAMP)

run: install
	$(VENV)/bin/noodle run examples/dense_layers.py

test: install
	bash scripts/services.sh install
	bash scripts/services.sh start
	@# bytecode is written on first import (a PYTHONDONTWRITEBYTECODE=1 environment recompiled numba,
	@# scipy and sklearn from source in every test subprocess: 5.9 s against 2.7 s per import)
	@status=0; . .noodle-services/env && env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	  bash scripts/services.sh stop; exit $$status

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: install
	$(PY) -m pip install -q --no-compile -e '.[bench-jax]'
	$(VENV)/bin/noodle bench

services-start:
	bash scripts/services.sh install && bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

clean:
	rm -rf $(VENV) .noodle-services .pytest_cache .hypothesis build *.egg-info
