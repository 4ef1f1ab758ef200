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

# The dashboard's tests drive Debian's Chromium (never Playwright's own download, which is unreachable).
CHROMIUM ?= $(or $(ORCHEST_TEST_CHROMIUM),/usr/bin/chromium)

.PHONY: run test lint crds bench clean browser

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

browser:
	@test -x $(CHROMIUM) || { test "$$(id -u)" = 0 \
		&& DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium; } \
		|| { echo "$(CHROMIUM) is missing: run 'sudo apt-get install chromium' (or set ORCHEST_TEST_CHROMIUM)"; exit 1; }

test: $(STAMP) $(EG_STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

crds: $(STAMP)
	$(BIN)/orchest crds --write

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(EG_VENV) examples/quickstart/.orchest
