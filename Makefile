# Prism: the targets a user needs. Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= store
MODEL ?= prism-movies
HOST ?= 127.0.0.1
PORT ?= 8000
# torch first and pinned: on a CPU machine 2.13.0 is the local CPU wheel; an unpinned torch
# (or a package asking for a newer one) would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
EXTRAS ?= cpu,train,batch,dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install system-tools run model test test-fast lint format bench bench-peers scale-bench teacher-bench batch-bench overload hot-swap loadtest gpu-check validate-deploy clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

## model: build the embedded default model offline (sample catalogue, grounded teacher) into ./store
model: install
	$(BIN)/prism-train build-default --store $(STORE) --name $(MODEL)

$(STORE)/$(MODEL)/aliases.json:
	$(MAKE) model

## run: set everything up and serve the default model on http://$(HOST):$(PORT)
run: install $(STORE)/$(MODEL)/aliases.json
	PRISM_STORE_DIR=$(STORE) PRISM_MODEL_NAME=$(MODEL) \
	  $(BIN)/uvicorn --factory service.main:create_app --host $(HOST) --port $(PORT) \
	  --timeout-graceful-shutdown 25 --limit-concurrency 512 --backlog 2048

## system-tools: promtool/prometheus, docker-compose and kustomize, which the suite drives
system-tools:
	bash scripts/install-system-tools.sh

## test: set everything up (Python deps and system tools) and run the whole suite
test: install system-tools
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy explain service model_store training bulk benchmarks

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench-peers: HF eager, the project's engine (fp32/int8/fp16, direct and over HTTP) and
## CTranslate2 fp32/int8 at the bart-base shape, rotated rounds (tables in benchmarks/results/)
bench-peers: install $(STORE)/$(MODEL)/aliases.json
	$(BIN)/python -m benchmarks.peers --store $(STORE) --name $(MODEL)

## bench: engines side by side on the same weights and inputs (tables in benchmarks/results/)
bench: install $(STORE)/$(MODEL)/aliases.json
	$(BIN)/python -m benchmarks.engines --store $(STORE) --name $(MODEL)

## scale-bench: 894,752 synthetic samples through distillation, a crash and resume, and encoding
scale-bench: install
	$(BIN)/python -m benchmarks.scale_bench

## teacher-bench: the teacher client against a local server answering after 100 ms
teacher-bench: install
	$(BIN)/python -m benchmarks.teacher_throughput

## batch-bench: prism-batch on local Ray (2 workers) against the HTTP service, same rows
batch-bench: install $(STORE)/$(MODEL)/aliases.json
	$(BIN)/python -m benchmarks.batch_explain --store $(STORE) --name $(MODEL)

## overload: find saturation, offer 2x for 60 s, count goodput, 503s, 504s, /healthz latency
overload: install $(STORE)/$(MODEL)/aliases.json
	$(BIN)/python -m benchmarks.overload --store $(STORE) --name $(MODEL)

## hot-swap: 3 swaps (one a rollback) and a refused corrupt version, under load
hot-swap: install $(STORE)/$(MODEL)/aliases.json
	$(BIN)/python -m benchmarks.hot_swap --store $(STORE) --name $(MODEL)

## loadtest: Locust against a local service (start one with `make run` in another shell)
loadtest: install
	bash loadtests/run.sh http://$(HOST):$(PORT)

## gpu-check: latency, peak GPU memory and parity on a CUDA machine (one prepared script)
gpu-check: install
	$(BIN)/python -m benchmarks.gpu_check

validate-deploy: install system-tools
	bash scripts/validate-deploy.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
