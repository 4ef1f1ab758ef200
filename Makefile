# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
EG_VENV := .venv-eg
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EG_STAMP := $(EG_VENV)/.installed
# Enterprise Gateway 3.x pins jupyter_client/jupyter_server versions that clash with papermill's, so it
# gets its own environment, exactly as it gets its own container in a cluster.
EG_VERSION := 3.3.0
# -P: `python -m` would put the repository root first on sys.path, where operator/ shadows the
# standard library's operator module and breaks pip before it starts.

.PHONY: run test lint lint-workflows crds bench version clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -P -m venv $(VENV)
	$(BIN)/python -P -m pip install --quiet --upgrade pip
	$(BIN)/python -P -m pip install --quiet -e '.[test]'
	touch $@

$(EG_STAMP):
	test -x $(EG_VENV)/bin/python || $(PYTHON) -P -m venv $(EG_VENV)
	$(EG_VENV)/bin/python -P -m pip install --quiet --upgrade pip
	$(EG_VENV)/bin/python -P -m pip install --quiet 'jupyter-enterprise-gateway==$(EG_VERSION)' ipykernel
	touch $@

run: $(STAMP)
	$(BIN)/orchest run examples/quickstart/pipeline.yaml

test: $(STAMP) $(EG_STAMP)
	$(BIN)/ruff check .
	$(MAKE) lint-workflows
	$(BIN)/python -m pytest -q

# actionlint with the venv's shellcheck for `run:` scripts (the same checks on every machine).
lint-workflows: $(STAMP)
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck -pyflakes=

lint: $(STAMP)
	$(BIN)/ruff check .

crds: $(STAMP)
	$(BIN)/orchest crds --write

bench: $(STAMP)
	$(BIN)/python -m bench

# `make version VERSION=0.2.0`: set the release version in pyproject.toml and stamp every copy of it.
version: $(STAMP)
	$(BIN)/python -m release.version --set $(VERSION)
	$(BIN)/python -m release.version --check

clean:
	rm -rf $(VENV) $(EG_VENV) examples/quickstart/.orchest
