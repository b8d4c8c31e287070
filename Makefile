# VPP digital twin. Quickstart: `make demo` (main job) and `make test` (the tests CI runs).
# Every target that needs the platform runs the idempotent, cached `make setup` first.
SHELL := /bin/bash
PY := .venv/bin/python
# A different topology file: make up VPP_TOPOLOGY=path/to/topology.yaml
ifdef VPP_TOPOLOGY
export VPP_TOPOLOGY
endif

.PHONY: help setup up down clean status wake sleep test test-unit lint demo check

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup: ## install engine, base image, Hadoop jars, venv and images (idempotent, cached)
	@infra/setup.sh

check: setup ## validate the topology file
	@$(PY) -m infra check

up: setup ## start the topology (dormant nodes created asleep), wait until healthy, declare streams
	@$(PY) -m infra up
	@$(PY) -m ingest declare
	@$(PY) -m infra services start

status: ## table of nodes: pool, state, health, ports, CPU/memory limits
	@if [ -x $(PY) ]; then $(PY) -m infra status; else echo "not set up: run make setup"; fi

down: ## stop and remove every project container (data volumes kept)
	@if [ -x $(PY) ]; then $(PY) -m infra down; else echo "not set up: nothing to stop"; fi

clean: ## down, then remove data volumes and run state
	@if [ -x $(PY) ]; then $(PY) -m infra clean; fi
	@rm -rf .state

wake: setup ## wake a dormant node: make wake NODE=worker-1
	@$(PY) -m infra wake $(NODE)

sleep: setup ## put a node to sleep: make sleep NODE=worker-1 [MODE=pause|stop]
	@$(PY) -m infra sleep $(NODE) $(if $(MODE),--mode $(MODE))

lint: setup ## ruff
	@.venv/bin/ruff check .

test: setup ## unit + integration tests against the real services (brings the platform up itself)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## only the tests that need no service
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: up ## the main job (grows with the project); for now: platform up + status
	@$(PY) -m infra status

.PHONY: dashboards
dashboards: setup ## regenerate the Grafana dashboards (infra/grafana/dashboards/*.json) from code
	@$(PY) -m infra.grafana.build

.PHONY: submit-stream fleet
submit-stream: up ## run the streaming job (twin + aggregates) via spark-submit: make submit-stream ARGS="..."
	@$(PY) -m spark_jobs.submit $(ARGS)

fleet: up ## run a DER fleet: make fleet ARGS="--ders 1000 --interval 10 --duration 120"
	@$(PY) -m sensors_sim run $(ARGS)

.PHONY: bench bench-platform
bench-platform: up ## wake/sleep latency of dormant nodes, pause vs stop -> results/platform/
	@$(PY) -m bench.platform_wake $(BENCH_ARGS)

bench: bench-platform ## every experiment; report under results/
