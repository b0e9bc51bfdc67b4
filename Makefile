# tickstrata — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .cache/venv
PY      := $(VENV)/bin/python
BIN     := .cache/bin
PYTEST_ARGS ?=
# Test processes: every worker starts its own servers (tmp paths and ports are per worker). Two, for CI's two cores:
# most integration time is waiting on servers and market minutes, so two workers cut the run by about a third.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist worksteal
DEMO_SECS ?= 60

.PHONY: help setup setup-kube check lint typecheck imports protos proto-check chart-check test test-unit test-integration reliability demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup:  ## install everything (venv from uv.lock, Redis, JDK, QuestDB, S3 server, buf) into .cache/, idempotently
	@bash scripts/setup.sh

setup-kube:  ## build etcd, kube-apiserver, kube-controller-manager and helm from the Go module proxy (~25 min once)
	@bash scripts/setup_kube.sh

check: setup setup-kube lint typecheck imports proto-check chart-check  ## ruff, mypy --strict, import contracts, protos, chart
	@echo "make check: all checks passed"

lint:
	$(VENV)/bin/ruff check services operator tests bench scripts
	$(VENV)/bin/ruff format --check services operator tests bench scripts

typecheck:
	$(VENV)/bin/mypy services/tickstrata operator/tickstrata_operator tests bench scripts

imports:
	$(VENV)/bin/lint-imports

protos:  ## regenerate the committed gRPC stubs from protos/
	$(PY) scripts/gen_protos.py

proto-check:
	@bash scripts/check_protos.sh

chart-check:
	$(PY) scripts/check_chart.py

test: setup setup-kube  ## install everything, then run every test (unit + integration) against real servers
	$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/bin/pytest $(XDIST) tests/unit $(PYTEST_ARGS)

test-integration: setup setup-kube
	$(VENV)/bin/pytest $(XDIST) tests/integration $(PYTEST_ARGS)

reliability: setup  ## full-size runs: 1M events through 20 kill -9 of the writer; the 10-minute soak; the validator scenario (a day, 500 gaps)
	TICKSTRATA_RELIABILITY=full $(VENV)/bin/pytest -m reliability --timeout 3600 -rP $(PYTEST_ARGS)

demo: setup  ## install everything, then run the pipeline locally (`tickstrata up`) for DEMO_SECS seconds
	$(VENV)/bin/tickstrata up --simulate --duration-secs $(DEMO_SECS)

bench: setup  ## run the benchmarks in bench/ and print their figures
	@bash scripts/setup.sh bench
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:  ## remove the caches of the checks (keeps .cache/, which holds the installed servers)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
