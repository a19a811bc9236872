# Two commands do all the set-up on a fresh machine:
#   make demo   create the environment, run the whole pipeline on the built-in dataset, print the table
#   make test   create the environment, run the test suite
#   make ablation  every experiment of config/config.yaml (the whole ablation table; about 30 minutes)
#   make seeds     the workflow once per seed (10-14) in runs/seedK/ (the config's run; SEED_RUN=all: every
#                  experiment), then mean, spread and paired 95 % intervals of the gaps to cam
#   make tiny      every stage on config/tiny.yaml (a few minutes; its numbers mean nothing)
#   make check CONFIG=config/my.yaml   check a config file (file, YAML syntax with line, schema) before a run
#   make lint      snakemake --lint, and snakefmt --check on workflow/ (Snakefile, rules)
#   make bench     speed of the heavy parts on this machine (bench/speed.py; VOC sizes with a GPU, reduced without)
#   make gate [SEEDS=...]  the built-in data's gate from the baseline of runs/seedK (bench/gate.py), after make seeds
#   make report [CONFIG=...]   results/report.html: the table, provenance, config and captioned figures of a run
VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
SEEDS ?= 10 11 12 13 14
SEED_RUN ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CONFIG ?= config/config.yaml

.PHONY: install demo ablation seeds gate tiny report check test lint bench clean

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

seeds: install
	for seed in $(SEEDS); do \
		$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --directory runs/seed$$seed \
			--config seed=$$seed $(if $(SEED_RUN),run=$(SEED_RUN)) || exit 1; \
	done
	mkdir -p results
	$(BIN)/python workflow/scripts/summarize_seeds.py $(foreach seed,$(SEEDS),runs/seed$(seed)/results/benchmark.csv) \
		--baseline cam --csv results/benchmark_seeds.csv --markdown results/benchmark_seeds.md

bench: install
	$(BIN)/python bench/speed.py $(BENCH_ARGS)

gate: install
	$(BIN)/python bench/gate.py $(foreach seed,$(SEEDS),runs/seed$(seed)) --json results/gate.json

tiny: install
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete --configfile config/tiny.yaml
	@cat results/benchmark.md

report: install
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --report results/report.html
	@echo "open results/report.html"

check: install
	$(BIN)/python -m wsss.core.config $(CONFIG)

test: install
	$(BIN)/python -m pytest -q -rs --durations=15 -n 2 --dist loadgroup

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow/

clean:
	rm -rf results resources runs .snakemake
