# Every target creates the virtual environment on first use, so a fresh clone needs only `make demo`
# or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: the demo needs only pixi-pack itself and its runtime dependencies; the tests, the lint
# and the benchmarks need the dev tools too (mypy, ruff, py-rattler, shiv, ...).
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: install test lint demo zipapp bench clean

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Packs the bundled offline example (examples/demo: a local channel and its pixi.lock), unpacks it
# into demo-output/env and runs the program it installs.
demo: $(RUNTIME_STAMP)
	rm -rf demo-output
	$(BIN)/pixi-pack examples/demo -o demo-output/environment.tar
	$(BIN)/pixi-unpack demo-output/environment.tar -o demo-output
	sh -c '. demo-output/activate.sh && hello-pixi-pack'

zipapp: $(STAMP)
	$(BIN)/python build_zipapp.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) dist build .mypy_cache .pytest_cache .ruff_cache demo-output
