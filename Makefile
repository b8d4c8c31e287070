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

demo: up ## the whole system on an overload-then-relax scenario, live status view; ARGS="--short|--down"
	@$(PY) -m demo $(ARGS)

.PHONY: demo-short
demo-short: up ## the CI-sized demo (a few minutes), summary must show lost = 0
	@$(PY) -m demo --short $(ARGS)

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

.PHONY: bench-model bench-autoscaler bench-report bench-overhead bench-ingest bench-queue bench-stream bench-faults bench-quick
bench-stream: up ## streaming job: latency p50/p95, max sustained readings/s at 1/2/3 workers, Fig. 10 -> results/stream/, results/fig10/
	@$(PY) -m bench.stream_capacity $(BENCH_ARGS)
	@$(PY) -m bench.fig8_energy  # its execution time per worker count comes from this run

bench-ingest: up ## Fig. 9: confirmed readings/s and bytes/s against DER count (10 .. 10,000), saturation limit, one-channel upper bounds (raw pika, PerfTest) -> results/fig9/
	@$(PY) -m bench.ingest_fig9 $(BENCH_ARGS)

bench-queue: up ## one channel's capacity while a stream consumer drains it (capacity.yaml queue) -> results/queue/ [BENCH_ARGS="--write-capacity"]
	@$(PY) -m bench.queue_capacity $(BENCH_ARGS)

bench-overhead: up ## Table IV: CPU/memory of agents, writer, collector, diagnoser from /metrics -> results/table4/
	@$(PY) -m bench.overhead $(BENCH_ARGS)

bench-model: setup ## Fig. 7: the resource model's held-out metrics and confusion matrices -> results/fig7/
	@$(PY) -m bench.fig7_model

bench-faults: up ## diagnoser on injected faults (CPU burner, flood, idle, nominal, straggler): precision/recall per label -> results/faults/ [BENCH_ARGS="--quick|--repeats N"]
	@$(PY) -m bench.fault_injection $(BENCH_ARGS)

bench-autoscaler: up ## Figs. 12/13 and the policy comparison on the live platform [BENCH_ARGS=--quick]
	@$(PY) -m bench.autoscaler_bench $(BENCH_ARGS)
	@$(PY) -m bench.fig8_energy  # its utilisation input comes from this run

bench-report: setup ## results/REPORT.md from whatever the experiments left under results/
	@$(PY) -m bench.report $(BENCH_ARGS)

bench: bench-platform bench-model bench-ingest bench-queue bench-stream bench-overhead bench-faults bench-autoscaler ## every experiment, then results/REPORT.md [BENCH_ARGS=--quick]
	@$(PY) -m bench.report $(BENCH_ARGS)

bench-quick: ## every experiment at toy size (BENCH_ARGS=--quick) into results/quick/, the full results left alone
	@VPP_RESULTS=$(CURDIR)/results/quick $(MAKE) --no-print-directory bench BENCH_ARGS=--quick

.PHONY: orchestrator orchestrator-stop retrain
orchestrator: up ## start the orchestrator (Alg. 3) in the background (log: .state/logs/orchestrator.log)
	@$(PY) -m infra services start orchestrator

orchestrator-stop: ## stop the orchestrator service
	@$(PY) -m infra services stop orchestrator

retrain: setup ## retrain the resource model from InfluxDB history: make retrain [ARGS="--since 6h"]
	@$(PY) -m autoscaler.retrain $(or $(ARGS),--since 6h)
