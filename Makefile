# One command each: install, run the demo workflow, test. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; a GPU user sets QUAGGA_TORCH (e.g. "torch==2.13.0" from PyPI on Linux is a CUDA build).
QUAGGA_TORCH ?= torch==2.13.0
CORES ?= all

.PHONY: install install-hpc demo test test-fast lint clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(QUAGGA_TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/quagga --version

# SLURM clusters: the executor plugin for `snakemake --profile workflow/profiles/slurm` (the [hpc] extra)
install-hpc: install
	$(BIN)/python -m pip install --quiet -e ".[test,hpc]"

demo:
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES)

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not slow and not workflow"

lint:
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

clean:
	rm -rf results data/demo
