# Two entry points on a fresh machine (README): `make demo` runs the quickstart study end to end,
# `make test` runs the test suite. Both create .venv and install what they need first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh $(VENV)

demo: setup
	$(BIN)/fm4npp-sweep quickstart

test: setup
	bash tools/run_tests.sh

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not slurm and not gpu"

lint: setup
	$(BIN)/ruff check fm4npp analysis tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py
