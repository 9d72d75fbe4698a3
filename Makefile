# Album pipeline: `make run` starts the local stack and the worker; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := bash compose/local/stack.sh
WORKER := bash compose/local/worker.sh
PYTEST_ARGS ?=

.PHONY: help run stop test test-cluster test-rules test-unit test-integration lint format typecheck bench-sinks stack-up stack-down \
        stack-status worker-up worker-down worker-logs venv clean bench bench-cluster bench-ingest bench-state migrate

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## Create the virtualenv and install the package with dev tools

SAMPLE_ALBUMS ?= 300

migrate: venv ## Apply the Postgres migrations to DATABASE_URL and to the test database
	@$(PY) -m streams migrate
	@DATABASE_URL=$$($(PY) -c 'from streams.settings import settings; u = settings.database_url.get(); print(u.rsplit("/", 1)[0] + "/albums_test")') $(PY) -m streams migrate

SAMPLE_RECORDING ?= compose/local/sample_recording.jsonl

run: venv stack-up migrate worker-up ## Start the stack and the worker, ingest the sample recording, feed sample albums, wait until they are stored, show where to look
	@$(PY) -m streams ingest replay $(SAMPLE_RECORDING)
	@$(PY) -m streams vision-stand-in
	@$(PY) -m streams generate-albums --albums $(SAMPLE_ALBUMS) --duplicate-share 0.05 \
		--missing-vision-share 0.03 --malformed-share 0.02 --not-in-album 3 --rate 2000 \
		--expect-out .stack/run/sample-albums.json
	@$(PY) -m streams await-albums --expect .stack/run/sample-albums.json
	@$(WORKER) info

stop: worker-down stack-down ## Stop the worker and the local stack

test: venv stack-up migrate test-rules ## Run the whole test suite (starts the servers it needs)
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)

test-cluster: venv stack-up migrate ## Fault tests on a 3-broker KRaft cluster it starts beside the stack (~15 min)
	$(PY) -m pytest -m cluster -s $(PYTEST_ARGS)

test-rules: ## promtool check and unit tests of compose/prometheus/alerts.yml (promtool comes with stack-up)
	@command -v promtool >/dev/null || $(STACK) install prometheus
	promtool check rules compose/prometheus/alerts.yml
	promtool test rules compose/prometheus/tests/*.yml

test-unit: venv ## Run the unit tests only (no server needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv ## ruff check + format check, mypy strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

stack-up: ## Start Kafka, Postgres, Neo4j, S3 and Prometheus on 127.0.0.1 (idempotent)
	@$(STACK) up

stack-down: ## Stop every server of the local stack
	@$(STACK) down

stack-status: ## Tell which server of the local stack is up
	@$(STACK) status

worker-up: venv ## Start the Faust worker in the background (pid file under .stack/run)
	@$(WORKER) up

worker-down: ## Stop the worker
	@$(WORKER) down

bench: venv stack-up ## Passthrough, assembler under both guarantees, latency, 1 vs 2 workers (medians, PNG)
	$(PY) scripts/bench_assembler.py --albums 10000 --runs 3

bench-sinks: venv stack-up migrate ## End-to-end albums/s with all four sinks, per sink, and embedding speed
	$(PY) scripts/bench_assembler.py --albums 20000 --runs 3 --guarantee at_least_once \
		--sinks s3,postgres,qdrant,neo4j
	$(PY) scripts/bench_embeddings.py

bench-cluster: venv ## Albums/s of 1, 2 and 3 workers on a 3-broker cluster it starts (medians, PNG)
	$(PY) scripts/bench_cluster_scale.py --albums 10000 --runs 3

bench-state: venv stack-up ## Peak memory with 1,000,000 albums in flight, restart and recovery times (PNG)
	$(PY) scripts/bench_state.py --albums 1000000

bench-ingest: venv stack-up migrate ## ingest replay throughput: messages/s, albums/s, MB/s (PNG in docs/bench/)
	$(PY) scripts/bench_ingest.py --albums 300 --runs 3

worker-logs: ## Follow the worker's log
	@tail -n 100 -f .stack/logs/worker.log

clean: stop ## Stop everything and delete .stack/ (data, logs, downloads) and the venv
	rm -rf .stack $(VENV)
