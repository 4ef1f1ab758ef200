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

# The images (images/README.md). BASE_IMAGE (default: the Dockerfiles' own, the official Python image);
# where its registry cannot be reached, images/build.sh builds a stand-in from Debian packages.
IMAGES := operator step-runner jupyter-server
REGISTRY ?= ghcr.io/orchest-operator
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE ?=
UV_VERSION := 0.13.9
# --python-platform linux: the images' platform, whatever machine regenerates the locks (hashes cover
# every wheel of each pinned version, so one lock serves amd64 and arm64). UPGRADE=1 moves every pin to
# the newest allowed version; without it only what pyproject.toml changed moves.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 --python-platform linux \
	--custom-compile-command 'make locks' $(if $(UPGRADE),--upgrade)

.PHONY: run test lint lint-workflows crds bench version clean images locks test-images

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

$(BIN)/uv: $(STAMP)
	$(BIN)/python -P -m pip install --quiet 'uv==$(UV_VERSION)'

# One lock per image, from the dependency group of the same name in pyproject.toml, with the packages
# listed in images/<image>/excludes.txt (if any) left out.
locks: $(BIN)/uv
	for image in $(IMAGES); do \
		excludes=images/$$image/excludes.txt; \
		$(BIN)/uv pip compile $(LOCK_FLAGS) --group pyproject.toml:$$image \
			$$(test -f $$excludes && echo --excludes $$excludes) -o images/$$image/requirements.txt \
			|| exit 1; \
	done

images:
	REGISTRY='$(REGISTRY)' TAG='$(TAG)' BASE_IMAGE='$(BASE_IMAGE)' images/build.sh $(IMAGES)

# The images built and run as the cluster runs them (tests/images). Starts a Docker engine when none
# runs and this machine can run one; skips with the reason otherwise.
test-images: $(STAMP) $(EG_STAMP)
	REGISTRY='$(REGISTRY)' TAG='$(TAG)' BASE_IMAGE='$(BASE_IMAGE)' images/test.sh

bench: $(STAMP)
	$(BIN)/python -m bench

# `make version VERSION=0.2.0`: set the release version in pyproject.toml and stamp every copy of it.
version: $(STAMP)
	$(BIN)/python -m release.version --set $(VERSION)
	$(BIN)/python -m release.version --check

clean:
	rm -rf $(VENV) $(EG_VENV) examples/quickstart/.orchest
