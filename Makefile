# medserve: every command a user runs is a target here. `make help` lists them.
# Each target bootstraps .venv from a fresh clone before it runs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REPO ?= model_repository
MODEL ?= medcnn
WORK ?= work

.DEFAULT_GOAL := help
.PHONY: help venv test test-unit test-integration k8s-check lint typecheck demo train export card \
	verify serve compat loadtest bench bench-quick chaos clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): export/pyproject.toml client/pyproject.toml loadtest/pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./export -e "./client[dicom]" -e "./loadtest[bench]" \
		-r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP) ## Train, export, verify, serve locally, classify PNG/JPEG/DICOM, report throughput
	$(BIN)/python -m medserve.demo --work $(WORK) --repo $(REPO)

venv: $(STAMP) ## Create .venv with the three distributions (editable) and the test tools

# checkov pins many dependencies of its own: it gets its own virtualenv. uv
# installs them about four times faster than pip (fresh clone, 2 shared cores).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_UV := uv==0.13.9

$(CHECKOV_STAMP): k8s/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check "$(CHECKOV_UV)"
	$(CHECKOV_VENV)/bin/uv pip install --quiet --compile-bytecode \
		--python $(CHECKOV_VENV)/bin/python -r k8s/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

# Debian's Prometheus server and promtool (package `prometheus`, pinned and
# checksummed), unpacked into .tools/: no root, no service. The alert-rule and
# autoscaling-signal tests run them.
PROMETHEUS_DIR := .tools/prometheus
PROMETHEUS_STAMP := $(PROMETHEUS_DIR)/.installed

$(PROMETHEUS_STAMP): tools/install-prometheus.sh
	tools/install-prometheus.sh $(PROMETHEUS_DIR)

.PHONY: prometheus
prometheus: $(PROMETHEUS_STAMP) ## Install Debian's prometheus and promtool into .tools/prometheus (no root)

k8s-check: $(STAMP) $(CHECKOV_STAMP) $(PROMETHEUS_STAMP) ## Render every k8s overlay/component combination; schema, checkov and policy checks
	$(BIN)/pytest -m k8s tests/k8s

test: $(STAMP) $(CHECKOV_STAMP) $(PROMETHEUS_STAMP) ## Run the whole test suite: lint, format, mypy, unit, integration (real Triton), k8s checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest tests

test-unit: $(STAMP) ## Run the unit tests only (no server)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP) $(PROMETHEUS_STAMP) ## Run the integration tests against a real local tritonserver
	$(BIN)/pytest tests/integration

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: $(STAMP) ## mypy only
	$(BIN)/mypy

# Train, export and verify: the model of `make train` becomes a new version in $(REPO).
train: $(STAMP) ## Train the reference CNN on synthetic scans into $(WORK)/model (reused when nothing changed)
	$(BIN)/medserve train --synthetic --output $(WORK)/model

# --int8 also writes model_int8.onnx (and the local-int8/onnx-cpu-int8 configs) when
# it passes its gate on the validation split; EXPORT_ARGS= exports FP32 alone.
EXPORT_ARGS ?= --int8
export: $(STAMP) ## Export $(WORK)/model/model.keras into $(REPO) as the next version (+ INT8), then verify
	$(BIN)/medserve export $(WORK)/model/model.keras --repo $(REPO) --name $(MODEL) $(EXPORT_ARGS)

verify: $(STAMP) ## Verify the newest version of $(MODEL) in $(REPO) (configs, checksums, both loaders)
	$(BIN)/medserve verify $(REPO) --name $(MODEL)

card: $(STAMP) ## Render the clinical model card (model_card.md) of the newest version of $(MODEL) in $(REPO)
	$(BIN)/medserve card $(REPO) --name $(MODEL)

# The local server: Triton's usual ports unless overridden (make serve GRPC_PORT=9001).
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002

serve: $(STAMP) ## Serve $(REPO) on a local tritonserver (the wheel's, CPU) until Ctrl-C
	$(BIN)/medserve serve $(REPO) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
		--metrics-port $(METRICS_PORT)

# The serving image's TensorFlow (2.17.1 in tritonserver:25.02) in its own virtualenv.
COMPAT_VENV := .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed

$(COMPAT_STAMP): export/compat/requirements.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --disable-pip-version-check -r export/compat/requirements.txt
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP) ## Load the export under TF 2.17.1 (session loader) and model.onnx under onnxruntime 1.28
	$(COMPAT_VENV)/bin/python export/compat/check_savedmodel.py $(REPO) --name $(MODEL)

# Load tests and the benchmark (loadtest/). Both train and export the reference
# model first if $(REPO) has none (train and export reuse earlier work).
LOADTEST_ARGS ?=
BENCH_ARGS ?=
.PHONY: loadtest bench bench-quick bench-readme tune

define loadtest_model
	@test -d $(REPO)/$(MODEL) || { $(BIN)/medserve train --synthetic --output $(WORK)/model && \
		$(BIN)/medserve export $(WORK)/model/model.keras --repo $(REPO) --name $(MODEL) \
		$(EXPORT_ARGS); }
endef

loadtest: $(STAMP) ## Headless locust on $(REPO) (or HOST=grpc://...): summary.json in loadtest/results/
	$(loadtest_model)
	loadtest/run --repo $(REPO) --model $(MODEL) $(if $(HOST),--host $(HOST)) $(LOADTEST_ARGS)

# medserve tune: the local config chosen by measurement on a real local Triton,
# within --budget-s (450 s by default, the server's start included). Writes
# configs/tuned.pbtxt for every model of $(REPO) (make bench then serves it)
# and the report $(WORK)/tune/tune.{json,md,png}. TUNE_ARGS passes options on.
TUNE_ARGS ?=
tune: $(STAMP) ## Tune the local config under load (<= 8 min): configs/tuned.pbtxt, report in work/tune/
	$(loadtest_model)
	$(BIN)/medserve tune $(REPO) --model $(MODEL) --out $(WORK)/tune $(TUNE_ARGS)

bench: $(STAMP) ## Benchmark (~17 min, quiet machine): limits per runtime, medserve, batching off, INT8, naive and PyTriton peers, payloads
	$(loadtest_model)
	$(MAKE) train
	$(BIN)/python -m medserve_bench.bench --repo $(REPO) --model $(MODEL) \
		--keras-model $(WORK)/model/model.keras --work $(WORK)/bench $(BENCH_ARGS)

bench-quick: $(STAMP) ## Short benchmark (1 round, 3 s cells): same table in loadtest/results/bench-quick/
	$(loadtest_model)
	$(MAKE) train
	$(BIN)/python -m medserve_bench.bench --quick --repo $(REPO) --model $(MODEL) \
		--keras-model $(WORK)/model/model.keras --work $(WORK)/bench $(BENCH_ARGS)

bench-readme: $(STAMP) ## Put the last make bench's tables (loadtest/results/bench/bench.json) into README.md and loadtest/README.md
	$(BIN)/python -m medserve_bench.readme_table loadtest/results/bench/bench.json \
		--write README.md loadtest/README.md

# Faults done to a real local tritonserver under SDK load (tests/chaos); a short
# form of the same faults runs in `make test` (tests/integration/test_chaos.py).
CHAOS_ARGS ?=
chaos: $(STAMP) ## Kill -9/restart, SIGTERM, overload, bombs, soak on a real local Triton: prints the table (~5 min)
	@mkdir -p $(WORK)
	PYTHONPATH=tests $(BIN)/python -m chaos --json $(WORK)/chaos.json $(CHAOS_ARGS)

.PHONY: bench-client
bench-client: $(STAMP) ## Client-side cost, no server (~30 s): preprocessing per core, uint8 vs float32 requests
	@mkdir -p $(WORK)
	$(BIN)/python client/benchmarks/preprocess_bench.py --json $(WORK)/bench-client.json

clean: ## Remove generated artifacts (keeps .venv)
	rm -rf $(WORK) loadtest/results .pytest_cache .mypy_cache .ruff_cache
	find $(REPO) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
