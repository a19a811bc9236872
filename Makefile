# Two commands do all the set-up on a fresh machine:
#   make demo   create the environment, run the whole pipeline on the built-in dataset, print the table
#   make test   create the environment, run the test suite
#   make ablation  every experiment of config/config.yaml (the whole ablation table; about 40 minutes)
VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo ablation test lint clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete
	@cat results/benchmark.md

ablation: install
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --config run=all
	@cat results/benchmark.md

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/snakemake --lint

clean:
	rm -rf results resources .snakemake
