# incidentflow: `make help` lists the targets. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tests use a broker of their own on another port, so they never touch a demo broker on 9092.
TEST_KAFKA_PORT ?= 19092
TEST_KAFKA_HOME ?= $(CURDIR)/.kafka-test

.DEFAULT_GOAL := help
# uv installs the locked dependencies (requirements.lock, every version and hash) and refreshes the lock.
UV_VERSION ?= 0.13.9
# The test broker's JVM compiles with C1 only and collects with one thread: a broker that lives minutes spends less of
# the machine's two cores on compiling and collecting (`make trust`'s broker keeps the defaults: the load search runs on it).
TEST_KAFKA_JAVA_OPTS ?= -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
# Test processes run side by side (pytest-xdist); TEST_JOBS=0 runs them one by one.
TEST_JOBS ?= 2
XDIST = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadgroup)
# Python keeps the modules it compiles (.pyc, and pytest's rewritten test modules) in __pycache__ even where the
# environment says not to (PYTHONDONTWRITEBYTECODE): otherwise every worker, gateway and test process the targets
# start compiles its imports again (0.8 s of CPU for a worker, 2 s for a pytest process).
export PYTHONDONTWRITEBYTECODE :=
.PHONY: help venv lock lint unit integration test trust soak bench bench-report demo kafka-up kafka-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

$(BIN)/incidentflow: pyproject.toml requirements.lock | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(BIN)/incidentflow ## create .venv and install the package with its test extra, at the versions of requirements.lock

lock: $(BIN)/uv ## refresh requirements.lock from pyproject.toml (then review the diff and run make test)
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 --generate-hashes \
	  --no-header --quiet -o requirements.lock

lint: venv ## ruff (lint and format check) and mypy --strict on src/
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

unit: venv ## unit and property tests (no network, seconds)
	$(BIN)/pytest tests/unit -q $(XDIST)

# Runs a command with INCIDENTFLOW_KAFKA_BOOTSTRAP set: the given broker, else a local one started and stopped around it.
with_kafka = if [ -z "$$INCIDENTFLOW_KAFKA_BOOTSTRAP" ] && command -v java >/dev/null && command -v mvn >/dev/null; then \
	  export INCIDENTFLOW_KAFKA_PORT=$(TEST_KAFKA_PORT) INCIDENTFLOW_KAFKA_HOME=$(TEST_KAFKA_HOME); \
	  deploy/kafka/kafka.sh up || exit 1; \
	  trap 'deploy/kafka/kafka.sh down' EXIT; \
	  export INCIDENTFLOW_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT); \
	fi; $(1)

integration: venv ## integration tests and the short trust suite on a real Kafka: INCIDENTFLOW_KAFKA_BOOTSTRAP if set, else a local broker it starts and stops
	@export INCIDENTFLOW_KAFKA_JAVA_OPTS="$(TEST_KAFKA_JAVA_OPTS)"; \
	  $(call with_kafka,$(BIN)/pytest tests/integration tests/trust -q $(XDIST) --durations=12)

trust: venv ## the full trust suite: fault scenarios (100,000 events), the load search, then bench/TRUST.md (about an hour)
	@$(call with_kafka,INCIDENTFLOW_TRUST=full INCIDENTFLOW_TRUST_RESULTS=bench/results $(BIN)/pytest tests/trust -q --timeout 3600; \
	  status=$$?; $(BIN)/python -u bench/load.py --search && $(BIN)/python bench/trust_report.py && \
	  $(BIN)/python bench/bench_report.py && exit $$status)

# The soak starts a broker of its own (its JVM heap resident from the start, so that the heap filling up is not taken for a
# leak) unless INCIDENTFLOW_KAFKA_BOOTSTRAP is set.
soak: venv ## 30 minutes at half the sustained rate (bench/results/load.json), memory and descriptors each minute; updates bench/TRUST.md
	@$(BIN)/python -u bench/soak.py; status=$$?; $(BIN)/python bench/trust_report.py; $(BIN)/python bench/bench_report.py; \
	  exit $$status

# Every benchmark of bench/README.md on the code as it is, one after the other, each starting a broker of its own unless
# INCIDENTFLOW_KAFKA_BOOTSTRAP is set; each writes bench/results/<name>.json, and bench/README.md is rewritten from them.
BENCHMARKS = gateway_throughput.py \
	correlation.py \
	startup.py \
	"fold_throughput.py --events 50000 --aggregates 10000 --open-incidents 1000 --rounds 3" \
	"fold_throughput.py --events 50000 --aggregates 10000 --open-incidents 1000 --rounds 3 --relabel --out bench/results/fold-relabel.json" \
	"state_growth.py --events 300000" \
	"load.py --search --rate 100"
bench: venv ## every benchmark, then bench/README.md and bench/TRUST.md (about 90 minutes, the soak included)
	@for b in $(BENCHMARKS); do echo "== bench/$$b"; $(BIN)/python -u bench/$$b || exit 1; done; \
	  $(BIN)/python -u bench/soak.py; status=$$?; $(BIN)/python bench/bench_report.py && $(BIN)/python bench/trust_report.py && exit $$status

bench-report: venv ## rewrite bench/README.md and bench/TRUST.md from bench/results/*.json
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/trust_report.py

# The local broker starts while lint and unit run, then serves the integration tests.
test: venv ## everything CI runs: lint, unit, integration and the short trust suite (with its own Kafka)
	@export INCIDENTFLOW_KAFKA_JAVA_OPTS="$(TEST_KAFKA_JAVA_OPTS)"; status=0; \
	  if [ -z "$$INCIDENTFLOW_KAFKA_BOOTSTRAP" ] && command -v java >/dev/null && command -v mvn >/dev/null; then \
	    export INCIDENTFLOW_KAFKA_PORT=$(TEST_KAFKA_PORT) INCIDENTFLOW_KAFKA_HOME=$(TEST_KAFKA_HOME); \
	    trap 'deploy/kafka/kafka.sh down' EXIT; \
	    deploy/kafka/kafka.sh up & up=$$!; \
	    $(MAKE) --no-print-directory lint unit || status=$$?; \
	    wait $$up || exit 1; \
	    export INCIDENTFLOW_KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT); \
	  else \
	    $(MAKE) --no-print-directory lint unit || status=$$?; \
	  fi; \
	  [ $$status -eq 0 ] || exit $$status; \
	  $(MAKE) --no-print-directory integration

demo: venv ## run the product locally: Kafka, gateway, worker, sample webhooks; Ctrl-C stops it all
	deploy/demo.sh

kafka-up: ## start the local Kafka on 127.0.0.1:9092 (fetches the jars the first time)
	deploy/kafka/kafka.sh up

kafka-down: ## stop the local Kafka
	deploy/kafka/kafka.sh down

clean: ## remove the virtualenv, local broker data and worker state
	rm -rf $(VENV) .kafka .kafka-test .data
