# Two entry points, each working on a fresh machine:
#   make run   installs vlmflow into .venv and runs the default workflow (rule all: results/summary.csv
#              plus the training curves and label checks)
#   make test  installs vlmflow with its test extras into .venv and runs the test suite
#   make lint  checks formatting (snakefmt, ruff format), lints (ruff, snakemake --lint) and the
#              import layers (lint-imports); `make format` rewrites the formatting
#   make bench runs every benchmark (after `make run`) and writes benchmarks/RESULTS.md
#   make pretrain  trains the tiny zoo again (snakemake pretrain: about 4 hours on 2 cores) and
#              publishes results/pretrain/zoo/ as resources/zoo/, the checkpoints the default starts from
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: run test install lint format bench pretrain clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test,lint]'
	touch $@

install: $(BIN)/snakemake

run: install
	$(BIN)/snakemake --cores $(CORES)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/ruff format --check
	$(BIN)/ruff check
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint

format: install
	$(BIN)/snakefmt Snakefile rules
	$(BIN)/ruff format
	$(BIN)/ruff check --fix

pretrain: install
	$(BIN)/snakemake pretrain --cores $(CORES)
	rm -rf resources/zoo
	cp -r results/pretrain/zoo resources/zoo
	find resources/zoo -name .snakemake_timestamp -delete

clean:
	rm -rf results logs .snakemake
