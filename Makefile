# rnnops — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The Reuters corpus for NLTK; a sibling nltk_data folder is used when NLTK_DATA is unset.
NLTK_DATA ?= $(abspath $(wildcard ../shared/nltk_data))
export NLTK_DATA
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DVC_NO_ANALYTICS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: help install run repro serve-flows bench bench-speed bench-quality bench-pipeline test test-fast test-unit test-integration test-behavioural test-e2e lint format metrics plots ui clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(BIN)/rnnops: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/rnnops ## create .venv and install the project with its dev tools

run: install ## the main job: the training flow (Prefect) over the DVC pipeline, then dvc push
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m flows.training --push
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc metrics show

repro: install ## plain `dvc repro` of the pipeline (no Prefect)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc metrics show

serve-flows: install ## serve the nightly-retrain and batch-score deployments (flow.serve)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m flows.deployments

bench: bench-speed bench-quality ## speed and quality benchmarks, then regenerate the README "Results" section
	$(BIN)/python bench/report.py

bench-speed: install ## default pipeline per stage (time, memory) and train stage vs a bare Keras loop (bench/results/speed.json)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/speed.py

bench-quality: install ## every model on R8, R52 and 90 topics, 3 seeds, beside TF-IDF + SVM (bench/results/quality.{json,png})
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/quality.py

bench-pipeline: install ## the default pipeline per stage beside TF-IDF + SVM (bench/results/pipeline.json)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/pipeline.py

# Test processes (pytest-xdist), one per core here; TEST_WORKERS=0 runs in this process.
# Each test file stays in one process (--dist loadfile), so its module fixtures are built once;
# files start in collection order (--no-loadscope-reorder), where tests/conftest.py puts the
# longest first.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: install ## run every test: unit, integration (real DVC), behavioural, browser (headless Chromium) and e2e (real corpus)
	$(BIN)/ruff check src flows tests bench scripts
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -m "" $(XDIST) --durations=15

test-unit: test-fast ## unit tests only (the same as test-fast)

test-integration: install ## integration tests only (real DVC on a tiny generated corpus)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q tests/integration

test-behavioural: install ## behavioural tests on a champion trained on a generated corpus (opt-in marker)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -m behavioural

test-reliability: install ## faults, bad input and load (tests/reliability; writes bench/results/reliability_load.json)
	PATH="$(abspath $(BIN)):$$PATH" RNNOPS_RECORD_LOAD_RESULTS=1 $(BIN)/pytest -q -s tests/reliability

test-fast: install ## the inner loop: unit tests only, no DVC, MLflow server or Prefect API (about 2 min)
	$(BIN)/pytest -q $(XDIST) tests/unit

test-e2e: install ## end-to-end tests on the real corpus
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q tests/e2e

lint: install ## ruff lint and format check
	$(BIN)/ruff check src flows tests bench scripts
	$(BIN)/ruff format --check src flows tests bench scripts

format: install ## format the code with ruff
	$(BIN)/ruff format src flows tests bench scripts
	$(BIN)/ruff check --fix src flows tests bench scripts

metrics: install ## compare the models' test metrics
	$(BIN)/dvc metrics show

plots: install ## render the DVC plots (learning curves, per-class F1) to dvc_plots/index.html
	$(BIN)/dvc plots show

MLFLOW_PORT ?= 5000
ui: install ## serve the MLflow UI on http://127.0.0.1:$(MLFLOW_PORT) (the project's mlflow.db)
	@echo "open http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning (the model-training view)"
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"

clean: ## remove pipeline outputs (the DVC cache keeps them)
	rm -rf data/raw data/processed models ensembles metrics plots reports dvc_plots

.PHONY: serve bench-serving
SERVE_PORT ?=
serve: install ## serve models:/reuters-topics@champion on http://127.0.0.1:8080 (params serving:; SERVE_PORT=N)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/rnnops serve $(if $(SERVE_PORT),--port $(SERVE_PORT))

bench-serving: install ## latency and throughput of the served champion vs the in-process pyfunc
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/serving.py

.PHONY: sweep study compare bench-sweep
SWEEP ?= sweep.yaml
MAX_PARALLEL ?= 2
sweep: install ## run a sweep (SWEEP=sweep.yaml: grid or list of overrides) as parallel DVC experiments; promote the best
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m flows.sweep $(SWEEP) --max-parallel $(MAX_PARALLEL)

compare: install ## the comparison report of the models (reports/comparison.{md,html}, plots/comparison/)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro compare

STUDY ?= study.yaml
study: install ## the RNN-vs-LSTM study (STUDY=study.yaml; QUICK=1: R8, one seed, ~20 min); reports/study.html
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m flows.study $(STUDY) $(if $(QUICK),--quick)

bench-sweep: install ## wall time of a 4-point sweep, max_parallel 1 vs 2 (bench/results/sweep.json)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/sweep.py

.PHONY: stack-up stack-down stack-status stack-demo
STACK_DIR ?= $(CURDIR)/.stack
stack-up: install ## PostgreSQL, S3 (moto), mlflow and prefect servers, a git remote and STACK_WORKERS=2 workers on 127.0.0.1 (.stack/)
	@PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/stack.py up --state-dir "$(STACK_DIR)"

stack-down: ## stop every process of the stack (its PostgreSQL data stays in .stack/)
	@$(BIN)/python scripts/stack.py down --state-dir "$(STACK_DIR)"

stack-demo: install ## a 2-point sweep on the stack's workers (their own clones), then what landed where
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/stack_demo.py --state-dir "$(STACK_DIR)"

stack-status: ## the stack's endpoints as NAME=VALUE lines (set -a; eval "$$(make -s stack-status)")
	@$(BIN)/python scripts/stack.py status --state-dir "$(STACK_DIR)"
